/**
 * The command line: parse, validate, build the runtime, run one command, render, and map every
 * outcome to an exit code (0 ok, 1 error, 2 plan with changes under --detailed-exitcode,
 * 3 a check failed, 4 blockers found). Only this layer (and `bin/`) decides how the process ends.
 */
import { Command, CommanderError, Option } from 'commander';
import { AbortedError, EXIT, PodidError, PreconditionError, UsageError } from '../engine/errors.ts';
import type { JournalDocument } from '../engine/journal.ts';
// The journal module pulls in the input validators (ajv, yaml): loaded only by commands that read a journal.
import { redactDeep, redactingStream, redactText as redact } from '../engine/redaction.ts';
import type { Runner, RunnerEvents } from '../engine/runner.ts';
import { commandPrefix, type DryRunMode } from '../engine/step.ts';
import { CORE_COMMANDS, EXTRA_COMMANDS } from './commands/index.ts';
import type { Runtime, RuntimeFactory } from './context.ts';
import { confirmOnTerminal, isCi, paint, type CliDeps, type Paint } from './io.ts';
import { CLOUD_NAMES, journalPathFor, OUTPUT_FORMATS, RUNBOOK_IDS, parseAksId, validateGlobalOptions, type GlobalOptions, type RawGlobalOptions } from './options.ts';

/**
 * Hidden first argument: `podid-migrate __complete <words...>` prints the completions of the
 * last word (Cobra's protocol, which kubectl uses for plugins through `kubectl_complete-*`).
 */
export const COMPLETE_COMMAND = '__complete';

/** The package version, shown by `--version`. */
export const VERSION = '0.1.0';

/** How the CLI was started. */
export interface MainOptions {
  /** The name help and hints use: `podid-migrate`, or `kubectl podid-migrate` for the kubectl plugin. */
  programName?: string;
}

type ContextModule = typeof import('./context.ts');
let contextModule: ContextModule | undefined;
/** The runtime factory and runner live in context.ts, which pulls in the engine: loaded when a command connects. */
async function loadContext(): Promise<ContextModule> {
  return (contextModule ??= await import('./context.ts'));
}
const createRuntimeOnDemand: RuntimeFactory = async (options, mode) => (await loadContext()).createRuntime(options, mode);

/** What command modules get: validated options, output, the runtime and helpers. */
export interface CliEnv {
  readonly deps: CliDeps;
  /** Set by a command to override the default exit code 0. */
  exitCode: number;
  /** CI=true: no prompts, plain progress lines. */
  readonly ci: boolean;
  /** A terminal is attached (prompts possible). */
  readonly interactive: boolean;
  /** Use listr2's animated renderer. */
  readonly animated: boolean;
  globals(cmd: Command): GlobalOptions;
  usage(message: string, hint: string): never;
  out(text: string): void;
  err(text: string): void;
  paint(globals: GlobalOptions): Paint;
  confirm(question: string): Promise<boolean>;
  /** Connects, runs `fn` with an AbortSignal wired to Ctrl-C, and always closes the runtime. */
  withRuntime(globals: GlobalOptions, dryRun: DryRunMode, fn: (runtime: Runtime, signal: AbortSignal) => Promise<void>): Promise<void>;
  runner(runtime: Runtime, globals: GlobalOptions, extra: { dryRun: DryRunMode; signal: AbortSignal; events?: RunnerEvents; stepOptions?: Record<string, unknown> }): Runner;
  /** The journal path, connecting only when neither --journal nor --aks-id names it. */
  journalPath(globals: GlobalOptions): Promise<string>;
  /** What help and hints call the program (`podid-migrate` or `kubectl podid-migrate`). */
  readonly programName: string;
  /** Reads the journal for status/history. @throws PreconditionError when there is none */
  readJournal(globals: GlobalOptions): Promise<{ doc: JournalDocument; path: string }>;
}

function defaultDeps(): CliDeps {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    interactive: Boolean(process.stdin.isTTY && process.stderr.isTTY),
    cwd: process.cwd(),
    confirm: confirmOnTerminal,
    createRuntime: createRuntimeOnDemand,
    extraCommands: EXTRA_COMMANDS,
    onInterrupt: (handler) => {
      process.on('SIGINT', handler);
      return () => process.off('SIGINT', handler);
    },
  };
}

/**
 * Runs the CLI with `argv` (as `process.argv`: node, script, args…) and resolves to the exit
 * code. Never calls `process.exit` except on a second Ctrl-C (the operator insists).
 */
export async function main(argv: string[], overrides: Partial<CliDeps> = {}, options: MainOptions = {}): Promise<number> {
  const given: CliDeps = { ...defaultDeps(), ...overrides };
  // Every output path (results, progress, logs, --verbose stacks) passes through redaction.
  const deps: CliDeps = { ...given, stdout: redactingStream(given.stdout), stderr: redactingStream(given.stderr) };
  const ci = isCi(deps.env);
  const programName = options.programName ?? 'podid-migrate';
  const env: CliEnv = {
    deps,
    programName,
    exitCode: EXIT.ok,
    ci,
    interactive: deps.interactive && !ci,
    animated: deps.interactive && !ci && Boolean(deps.stderr.isTTY),
    globals: (cmd) => validateGlobalOptions(cmd.optsWithGlobals() as RawGlobalOptions, deps.env, deps.cwd),
    usage: (message, hint) => {
      throw new UsageError(message, hint);
    },
    out: (text) => void deps.stdout.write(text),
    err: (text) => void deps.stderr.write(text),
    paint: (globals) => paint(globals.color && Boolean(deps.stderr.isTTY)),
    confirm: (q) => deps.confirm(q),
    withRuntime: async (globals, dryRun, fn) => {
      const controller = new AbortController();
      let interrupts = 0;
      const unsubscribe = deps.onInterrupt(() => {
        interrupts += 1;
        if (interrupts === 1) {
          deps.stderr.write('\nInterrupted: stopping at the next safe point (the journal records where). Press Ctrl-C again to exit now.\n');
          controller.abort(new AbortedError('interrupted by Ctrl-C.', 'The journal records how far the run got. Run the same command again to re-plan and continue.'));
        } else {
          deps.stderr.write('Exiting now. Run `podid-migrate status` to see where the journal stopped; a stale lock is reported with its force-unlock command.\n');
          process.exit(130);
        }
      });
      let runtime: Runtime | undefined;
      try {
        await loadContext();
        runtime = await deps.createRuntime(globals, { dryRun, signal: controller.signal, env: deps.env, progress: (line) => void deps.stderr.write(`  waiting: ${line}\n`) });
        await fn(runtime, controller.signal);
      } finally {
        unsubscribe();
        await runtime?.close();
      }
    },
    runner: (runtime, globals, extra) => contextModule!.runnerFor(runtime, globals, extra),
    journalPath: async (globals) => {
      if (globals.journal) return globals.journal;
      const aks = globals.aksId ? parseAksId(globals.aksId) : undefined;
      if (aks) return journalPathFor(globals, aks.name);
      let path = '';
      await env.withRuntime(globals, 'none', async (runtime) => {
        path = journalPathFor(globals, runtime.cluster.name);
      });
      return path;
    },
    readJournal: async (globals) => {
      const path = await env.journalPath(globals);
      const { Journal, assertJournalRunbook } = await import('../engine/journal.ts');
      const doc = await Journal.read(path);
      if (!doc) {
        throw new PreconditionError(`no journal at ${path}: nothing has been applied to this cluster with it.`, `Start with \`${commandPrefix(globals.runbook)} plan\`, or point --journal at an existing journal.`);
      }
      assertJournalRunbook(doc, globals.runbook, path);
      // Whatever the file holds, nothing token-shaped reaches a renderer.
      return { doc: redactDeep(doc), path };
    },
  };

  const program = buildProgram(env, [...CORE_COMMANDS, ...deps.extraCommands], programName);
  if (argv[2] === COMPLETE_COMMAND) {
    // Dynamic completion (kubectl's plugin completion calls it): words in, candidates out.
    const { completeWords, completionModel, formatCompletion } = await import('./actions/completion.ts');
    env.out(formatCompletion(completeWords(completionModel(program), argv.slice(3))));
    return EXIT.ok;
  }
  const verbose = argv.includes('--verbose');
  try {
    await program.parseAsync(argv);
    return env.exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.help' || error.code === 'commander.version') return EXIT.ok;
      // Commander already printed "error: …" naming the option or argument.
      deps.stderr.write(`  Run \`${programName} ${commandName(argv, program)}--help\` for the options.\n`);
      return EXIT.error;
    }
    if (error instanceof PodidError) {
      deps.stderr.write(formatError(error));
      return error.exitCode;
    }
    // A server that kept failing after the gateway's retries is the environment, not a bug.
    const err = error as Error & { retryable?: boolean };
    if ((err?.name === 'KubeApiError' || err?.name === 'AzureApiError') && err.retryable) {
      deps.stderr.write(`Error: ${redact(err.message)}\n`);
      deps.stderr.write(`  The ${err.name === 'KubeApiError' ? 'Kubernetes API server' : 'Azure Resource Manager'} kept failing after retries. Run the same command again later; the journal resumes where it stopped.\n`);
      return EXIT.error;
    }
    // An unexpected failure: the message (redacted) and, with --verbose, the stack.
    deps.stderr.write(`Error: ${redact(err?.message ?? String(error))}\n`);
    if (verbose && err?.stack) deps.stderr.write(`${redact(err.stack)}\n`);
    else deps.stderr.write('  This is unexpected. Re-run with --verbose for details; the journal records how far the run got.\n');
    return EXIT.error;
  }
}

function commandName(argv: string[], program: Command): string {
  const known = new Set(program.commands.map((c) => c.name()));
  const found = argv.slice(2).find((a) => known.has(a));
  return found ? `${found} ` : '';
}

/** `Error: <message>` then the hint, indented; no stack. */
export function formatError(error: PodidError): string {
  const lines = [`Error: ${redact(error.message)}`];
  if (error.hint) for (const line of redact(error.hint).split('\n')) lines.push(`  ${line}`);
  return `${lines.join('\n')}\n`;
}

/** The commander program with every command registered (actions load on demand); completion walks it. */
export function buildProgram(env: CliEnv, commands: ReadonlyArray<{ register(program: Command, env: CliEnv): void }>, programName = 'podid-migrate'): Command {
  const program = new Command(programName)
    .description('Move an AKS cluster from AAD Pod Identity standard mode to managed mode without an outage: plan, apply step by step, check, roll back.')
    .version(VERSION)
    .option('--kubeconfig <file>', 'kubeconfig file (default: $KUBECONFIG or ~/.kube/config)')
    .option('--context <name>', 'kubeconfig context')
    .option('--subscription <id>', 'Azure subscription id (default: the one in --aks-id)')
    .addOption(new Option('--cloud <name>', 'Azure cloud: ARM endpoint, sign-in authority and token audience (env PODID_MIGRATE_CLOUD; default AzureCloud)').choices(CLOUD_NAMES))
    .option('--aks-id <resource-id>', 'AKS managed cluster resource id (env PODID_MIGRATE_AKS_ID)')
    .option('--inventory <file>', 'inventory file (default: inventory/<cluster>.yaml)')
    .option('--journal <file>', 'journal file (default: .podid-migrate/<cluster>.json; another runbook: <cluster>.<runbook>.json)')
    .addOption(new Option('--runbook <id>', 'which migration: managed-mode (standard to managed mode) or workload-identity (off pod identity to Microsoft Entra Workload ID) (env PODID_MIGRATE_RUNBOOK; default managed-mode)').choices(RUNBOOK_IDS))
    .addOption(new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('table'))
    .option('--step-timeout <duration>', 'deadline for each step call (default 30m; drain also has --drain-timeout)')
    .option('--verbose', 'debug lines, and error stacks in the journal log')
    .option('--no-color', 'no colours (also NO_COLOR)')
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ writeOut: (s) => env.out(s), writeErr: (s) => env.err(s) });
  for (const command of commands) command.register(program, env);
  for (const sub of program.commands) sub.exitOverride().configureOutput({ writeOut: (s) => env.out(s), writeErr: (s) => env.err(s) });
  return program;
}
