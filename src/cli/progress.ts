/**
 * Progress of a run or a rollout on a terminal: the log lines scroll as they always do, and one
 * status line under them shows a spinner, the current step (`==> build`) with its elapsed time and
 * the latest rollout progress. Not on a terminal (a pipe, a CI log): the lines alone, unchanged.
 *
 * The status line is erased before each log line and drawn again after it, so it never mixes into
 * the log; the spinner turns on a timer that does not keep the process alive.
 */
import { style } from './style.js';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export interface Progress {
  /** Print one log line (and keep the status line under it). */
  line(text: string): void;
  /** Erase the status line and stop the spinner (at the end, also on failure). */
  done(): void;
}

export interface ProgressStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(s: string): boolean;
}

/** Lines that say where a rollout is: `rollout #3 …`, `… at 25% …`, `2/3 ready`. */
const ROLLOUT = /\brollout\b|\d+%|\b\d+\/\d+ ready\b/;

export function progress(stream: ProgressStream = process.stdout, now: () => number = Date.now, intervalMs = 100): Progress {
  if (stream.isTTY !== true) {
    return { line: (text) => void stream.write(text + '\n'), done: () => undefined };
  }
  const s = style(stream);
  let frame = 0;
  let step: string | undefined;
  let stepSince = now();
  let rollout: string | undefined;
  let shown = false;
  const status = (): string => {
    const secs = Math.floor((now() - stepSince) / 1000);
    const text = `${FRAMES[frame % FRAMES.length]} ${step ?? 'starting'} ${secs}s${rollout ? ` · ${rollout}` : ''}`;
    const width = Math.max(20, (stream.columns ?? 80) - 1);
    return s.cyan(text.length > width ? `${text.slice(0, width - 1)}…` : text);
  };
  const erase = (): void => {
    if (shown) stream.write('\r\x1b[2K');
    shown = false;
  };
  const draw = (): void => {
    erase();
    stream.write(status());
    shown = true;
  };
  const timer = setInterval(() => {
    frame++;
    draw();
  }, intervalMs);
  timer.unref();
  return {
    line(text) {
      const m = /^==> (.+)$/.exec(text);
      if (m) {
        step = m[1];
        stepSince = now();
        rollout = undefined;
      } else if (ROLLOUT.test(text)) rollout = text.trim();
      erase();
      stream.write(text + '\n');
      draw();
    },
    done() {
      clearInterval(timer);
      erase();
    },
  };
}
