/**
 * Progress while quiet: `still installing… 2m10s`. A SilenceTimer calls `onSilent(elapsedMs)` when
 * nothing was seen for `periodMs`, then again every `periodMs` while it stays quiet; `poke()` (a
 * line of output) starts the wait over; `stop()` ends it. Elapsed time is measured from the start on
 * the monotonic clock. Used by the executor (a command's output) and the runner (steps that are not
 * commands: a docker build, an upload, a rollout).
 */
import { performance } from 'node:perf_hooks';

/** setTimeout fires at once above 2^31-1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class SilenceTimer {
  private timer: NodeJS.Timeout | undefined;
  private readonly started = performance.now();
  private readonly periodMs: number;
  private stopped = false;
  private paused = false;

  constructor(
    periodMs: number,
    private readonly onSilent: (elapsedMs: number) => void,
  ) {
    this.periodMs = Math.min(Math.max(periodMs, 10), MAX_TIMER_MS);
    this.arm();
  }

  /** Something was printed: wait a whole period again. */
  poke(): void {
    if (!this.stopped && !this.paused) this.arm();
  }

  /** Someone else reports for a while (a command with its own notices): no notice until resume(). */
  pause(): void {
    this.paused = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.poke();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      try {
        this.onSilent(performance.now() - this.started);
      } catch {
        // a notice is best effort: it never stops what it reports on
      }
      if (!this.stopped && !this.paused) this.arm();
    }, this.periodMs);
  }
}

/** 45s, 2m10s: whole seconds, for progress lines. */
export function elapsedText(ms: number): string {
  const secs = Math.round(ms / 1000);
  return secs < 60 ? `${secs}s` : `${Math.floor(secs / 60)}m${secs % 60}s`;
}
