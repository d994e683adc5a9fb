/** Step deadlines and how durations read in messages (shared by the runner and the steps). */

/** Default time a step's apply, check or rollback may take before it is aborted. */
export const DEFAULT_STEP_TIMEOUT_MS = 30 * 60_000;

/** `1h2m`, `5m0s`, `1.2 s` style durations for messages. */
export function formatDuration(ms: number): string {
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h${m}m`;
  return `${m}m${sec}s`;
}
