/**
 * The CLI's view of the outside world, injectable so tests drive `main()` without a terminal.
 */
import { styleText } from 'node:util';
import type { RuntimeFactory } from './context.ts';
import type { CommandModule } from './commands/index.ts';

/** A minimal writable stream (process.stdout / stderr, or a test buffer). */
export interface OutStream {
  write(chunk: string): boolean;
  isTTY?: boolean;
}

/** Everything `main()` touches outside its arguments. */
export interface CliDeps {
  stdout: OutStream;
  stderr: OutStream;
  env: Record<string, string | undefined>;
  /** True when stdin and stderr are terminals (prompts and the animated view are allowed). */
  interactive: boolean;
  cwd: string;
  /** Asks a yes/no question on the terminal; resolves true only for an explicit yes. */
  confirm(question: string): Promise<boolean>;
  /** Builds the gateways and step registry (fakes in tests). */
  createRuntime: RuntimeFactory;
  /** Commands added by other modules (sandbox, demo). */
  extraCommands: CommandModule[];
  /** Ctrl-C source; default process signals. */
  onInterrupt(handler: () => void): () => void;
}

/** Terminal yes/no prompt on stderr (stdout stays for data). */
export async function confirmOnTerminal(question: string): Promise<boolean> {
  // Loaded here: readline costs every start-up (even --help) several milliseconds.
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} Only 'yes' will be accepted: `);
    return answer.trim() === 'yes';
  } finally {
    rl.close();
  }
}

/** True when the environment says "no prompts" (CI=true or CI=1). */
export function isCi(env: Record<string, string | undefined>): boolean {
  const ci = env.CI?.toLowerCase();
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
}

/** Colour helper honouring --no-color / NO_COLOR / non-TTY output. */
export interface Paint {
  enabled: boolean;
  green(s: string): string;
  yellow(s: string): string;
  red(s: string): string;
  bold(s: string): string;
  dim(s: string): string;
}

export function paint(enabled: boolean): Paint {
  const style = (format: Parameters<typeof styleText>[0]) => (s: string) => (enabled ? styleText(format, s, { validateStream: false }) : s);
  return { enabled, green: style('green'), yellow: style('yellow'), red: style('red'), bold: style('bold'), dim: style('dim') };
}
