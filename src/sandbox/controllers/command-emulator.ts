/**
 * The command emulator: a {@link ContainerProgram} for containers (and exec probes) whose
 * command line is `curl ...`, `wget ...`, `sleep`/`echo`-style utilities, or a shell script
 * (`sh -c "..."`, `/bin/sh -c`, `bash -c`). It runs the script through the {@link Shell}
 * interpreter, performs the HTTP calls through the pod network from the pod's address, writes
 * stdout/stderr to the container log line by line and exits with the code the real tools
 * would.
 */
import type { Clock } from '../clock.ts';
import type { PodNetwork, SimSource } from '../netsim.ts';
import type { ContainerContext, ContainerProcess } from '../runtime.ts';
import { curlCommand, wgetCommand, wgetFlavorForImage } from './http-tools.ts';
import { type Io, Shell } from './shell.ts';

const SHELLS = new Set(['sh', 'bash', 'ash', 'dash']);
const UTILITIES = new Set(['curl', 'wget', 'sleep', 'echo', 'true', 'false', 'printf', 'cat']);

function base(cmd: string): string {
  return cmd.slice(cmd.lastIndexOf('/') + 1);
}

/** Where a shell invocation keeps its script: `sh -c SCRIPT [$0 [$1...]]` (flags may be bundled: `-ec`). */
function shellScript(argv: string[]): { script: string; positional: string[]; errexit: boolean } | undefined {
  if (!SHELLS.has(base(argv[0] ?? ''))) return undefined;
  let errexit = false;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (!/^-[a-z]+$/.test(a)) return undefined;
    if (a.includes('e')) errexit = true;
    if (a.includes('c')) {
      if (i + 1 >= argv.length) return undefined;
      return { script: argv[i + 1], positional: argv.slice(i + 2), errexit };
    }
  }
  return undefined;
}

/** Whether the emulator should run this argv (the kubelet's fallback program choice). */
export function isEmulatedArgv(argv: string[]): boolean {
  if (!argv.length) return false;
  return UTILITIES.has(base(argv[0])) || shellScript(argv) !== undefined;
}

/** Matcher for {@link ProgramRegistry.register}: decides on the container's declared command line. */
export function matchesEmulatedContainer(_image: string, container: Readonly<Record<string, any>>): boolean {
  return isEmulatedArgv([...((container.command as string[] | undefined) ?? []), ...((container.args as string[] | undefined) ?? [])].map(String));
}

export interface RunCommandOptions {
  clock: Clock;
  network: PodNetwork;
  source: SimSource;
  env: Record<string, string>;
  image: string;
  signal: AbortSignal;
  out: (text: string) => void;
  err: (text: string) => void;
  /** Files of the container's volumes (projected tokens). */
  readMounted?: (path: string) => string | undefined;
}

/**
 * Runs one command line (argv as the container runtime receives it) to completion and
 * returns its exit status (137 when `signal` kills it).
 */
export async function runCommand(argv: string[], opts: RunCommandOptions): Promise<number> {
  const commands = {
    curl: curlCommand(opts.network, opts.source),
    wget: wgetCommand(opts.network, opts.source, wgetFlavorForImage(opts.image)),
  };
  const io: Io = { out: opts.out, err: opts.err, stdin: '' };
  const sh = shellScript(argv);
  if (sh) {
    const shell = new Shell({ clock: opts.clock, signal: opts.signal, env: opts.env, commands, name: base(argv[0]) === 'bash' ? 'bash' : 'sh', positional: sh.positional.length ? sh.positional : [base(argv[0])], readMounted: opts.readMounted });
    const script = sh.errexit ? `set -e\n${sh.script}` : sh.script;
    return shell.run(script, io);
  }
  const shell = new Shell({ clock: opts.clock, signal: opts.signal, env: opts.env, commands, name: base(argv[0] ?? 'sh'), readMounted: opts.readMounted });
  if (!argv.length || !isEmulatedArgv(argv)) {
    // What the container runtime reports for a binary the image does not have.
    opts.err(`exec: "${argv[0] ?? ''}": executable file not found in $PATH\n`);
    return 127;
  }
  return shell.exec(argv, io);
}

/** Splits a stream into log lines; the last partial line is flushed at exit, as container logs show it. */
class LineSink {
  private buf = '';
  private readonly emit: (line: string) => void;
  constructor(emit: (line: string) => void) {
    this.emit = emit;
  }
  write(text: string): void {
    this.buf += text;
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      this.emit(this.buf.slice(0, i).replace(/\r$/, ''));
      this.buf = this.buf.slice(i + 1);
    }
  }
  flush(): void {
    if (this.buf) this.emit(this.buf);
    this.buf = '';
  }
}

/** The {@link ContainerProgram} the kubelet registers as the fallback for command-line containers. */
export function commandEmulator(ctx: ContainerContext): ContainerProcess {
  const out = new LineSink((l) => ctx.log(l));
  const err = new LineSink((l) => ctx.log(l));
  const exited = runCommand(ctx.argv, {
    clock: ctx.clock,
    network: ctx.network,
    source: { ip: ctx.podIp, nodeName: ctx.nodeName, pod: { namespace: String(ctx.pod.metadata.namespace), name: String(ctx.pod.metadata.name) } },
    env: ctx.env,
    image: String(ctx.container.image ?? ''),
    signal: ctx.signal,
    out: (t) => out.write(t),
    err: (t) => err.write(t),
    readMounted: ctx.readFile ? (path) => ctx.readFile!(path) : undefined,
  })
    .catch((e: unknown) => {
      err.write(`sh: ${(e as Error)?.message ?? String(e)}\n`);
      return ctx.signal.aborted ? 137 : 2;
    })
    .finally(() => {
      out.flush();
      err.flush();
    });
  return {
    exited,
    // The script runs as PID 1 without a SIGTERM handler, so the kernel drops SIGTERM and
    // only the kill at the end of the grace period stops it, exactly as in a real pod.
    terminate() {},
  };
}
