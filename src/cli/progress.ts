/**
 * The progress view: runner events rendered by listr2 on stderr (animated on a terminal,
 * timestamped plain lines in CI or when stderr is not a TTY). It is only a view: the runner
 * drives the work; each listr2 task just waits for its step's events.
 */
import { Listr, ListrLogger, PRESET_TIMESTAMP, ProcessOutput, createWritable } from 'listr2';
import type { RunnerEvents, StepRunResult } from '../engine/runner.ts';
import type { StepId } from '../engine/step.ts';
import type { OutStream } from './io.ts';

interface Deferred<T> {
  promise: Promise<T>;
  settled: boolean;
  resolve(value: T): void;
  reject(error: unknown): void;
}

function deferred<T>(): Deferred<T> {
  const d = { settled: false } as Deferred<T>;
  d.promise = new Promise<T>((res, rej) => {
    d.resolve = (value) => {
      d.settled = true;
      res(value);
    };
    d.reject = (error) => {
      d.settled = true;
      rej(error);
    };
  });
  d.promise.catch(() => {});
  return d;
}

/** Options for {@link runWithProgress}. */
export interface ProgressOptions {
  stderr: OutStream;
  /** Animated renderer (TTY and not CI); otherwise timestamped lines. */
  animated: boolean;
  verbose: boolean;
  /** Suffix for task titles ("rollback"). */
  verb: 'apply' | 'rollback';
}

const NOT_RUN = Symbol('not-run');

/**
 * Runs `work` (which receives the runner events to pass on) while listr2 shows one task per
 * step. Resolves or rejects exactly as `work` does; the view never changes the outcome.
 */
export async function runWithProgress<T>(steps: ReadonlyArray<{ id: StepId; title: string }>, options: ProgressOptions, work: (events: RunnerEvents) => Promise<T>): Promise<T> {
  const ends = new Map(steps.map((s) => [s.id, deferred<StepRunResult | typeof NOT_RUN>()]));
  const outputs = new Map<StepId, (message: string) => void>();
  const titles = new Map<StepId, (title: string) => void>();
  const pending = new Map<StepId, string>();
  const stream = createWritable((chunk) => {
    options.stderr.write(chunk);
  });
  // Both streams to stderr: stdout carries only the command's data (-o json stays parseable).
  const processOutput = new ProcessOutput(stream as NodeJS.WriteStream, stream as NodeJS.WriteStream);
  const logger = new ListrLogger({ useIcons: options.animated, processOutput, fields: { prefix: [], suffix: [] } });
  const list = new Listr(
    steps.map((s) => ({
      title: s.id,
      task: async (_ctx: unknown, task: { output: string; title: string; skip(message?: string): void }) => {
        outputs.set(s.id, (m) => (task.output = m));
        titles.set(s.id, (t) => (task.title = t));
        const early = pending.get(s.id);
        if (early) task.output = early;
        const end = await ends.get(s.id)!.promise;
        if (end === NOT_RUN) {
          task.skip(`${s.id}: not run`);
          return;
        }
        const suffix = end.outcome === 'skipped' ? '' : ` (${(end.durationMs / 1000).toFixed(1)} s)`;
        task.title = `${s.id}${suffix}  ${end.summary}`;
      },
    })),
    {
      concurrent: false,
      exitOnError: true,
      registerSignalListeners: false,
      renderer: options.animated ? 'default' : 'verbose',
      fallbackRenderer: 'verbose',
      rendererOptions: options.animated
        ? { logger, collapseSubtasks: false, showErrorMessage: false, persistentOutput: false }
        : // Title changes are not logged: the final title (with the summary) is the [COMPLETED] line,
          // and phases show as output lines, so CI logs carry each fact once.
          { logger, timestamp: PRESET_TIMESTAMP, logTitleChange: false },
    } as never,
  );
  const events: RunnerEvents = {
    stepStart: (id, _title, phase) => {
      const set = titles.get(id);
      const label = phase === 'apply' ? id : `${id} (${phase})`;
      // A task not yet shown picks its title up when it starts.
      if (set) set(label);
      if (!options.animated && phase !== 'apply') {
        const out = outputs.get(id);
        const line = phase === 'check' ? 'checking the outcome…' : `${phase}…`;
        if (out) out(line);
        else pending.set(id, line);
      }
    },
    stepProgress: (id, message) => {
      const set = outputs.get(id);
      if (set) set(message);
      else pending.set(id, message);
    },
    stepEnd: (result) => ends.get(result.stepId)?.resolve(result),
    log: (level, message, id) => {
      if (level === 'debug' && !options.verbose) return;
      const set = id ? outputs.get(id) : undefined;
      if (set && level !== 'warn') set(message);
      else if (level === 'warn') options.stderr.write(`warning: ${id ? `[${id}] ` : ''}${message}\n`);
    },
  };
  const view = list.run().catch(() => {});
  let result: T;
  try {
    result = await work(events);
  } catch (error) {
    // The step that was running fails in the view; the rest are shown as not run.
    let failed = false;
    for (const s of steps) {
      const end = ends.get(s.id)!;
      if (!failed && outputs.has(s.id) && !end.settled) {
        end.reject(error);
        failed = true;
        continue;
      }
      end.resolve(NOT_RUN);
    }
    await view;
    throw error;
  }
  for (const s of steps) ends.get(s.id)!.resolve(NOT_RUN);
  await view;
  return result;
}
