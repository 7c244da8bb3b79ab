/**
 * A keyed work queue in the shape of controller-runtime's: it holds keys, not events, and calls
 * `reconcile(key)`, which re-reads the state of that key and answers `{ requeueAfterMs? }` or throws.
 *
 *   enqueue(k) ─► ready ─► running ─┬─ ok ─────────────► (requeueAfterMs? ─► delayed ─► ready)
 *        ▲      (a Set:    (one at a │                      backoff forgotten
 *        │      coalesced)  time per ├─ retryable error ──► delayed by backoff ─► ready
 *        │                  key)     └─ terminal error ───► parked until enqueue(k) (a change)
 *        └── while running: marked dirty, reconciled once more when the run ends
 *
 * Rules: a key enqueued many times while it waits (or in one synchronous stretch) is reconciled once; one key is never reconciled
 * twice at once; a key's errors back off exponentially (base · 2^(n-1), capped) and the count is
 * forgotten on its first success; an error that says retrying cannot help (a `PilotError` whose
 * catalogue entry has `retryable: false`) parks the key until a change enqueues it again (a resync
 * does not); one key's failure never delays another key. Time comes from an injectable `Clock`.
 */
import { isPilotError } from '../core/errors.js';

/** Monotonic time and timers: the system's by default, a fake one in tests. */
export interface Clock {
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

/** performance.now() and unref'd timers: a queue never holds a process open. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface ReconcileResult {
  /** Reconcile this key again after this long (a deadline, a drain in progress), unless a change comes first. */
  readonly requeueAfterMs?: number | undefined;
}

/** What happened to a key whose reconcile threw. */
export interface FailureInfo {
  /** Consecutive failures of this key, this one included. */
  readonly attempt: number;
  /** The error says retrying cannot help: parked until the key is enqueued by a change. */
  readonly terminal: boolean;
  /** When retryable: the back-off before the next try. */
  readonly retryInMs: number | undefined;
}

export interface WorkQueueOptions<K> {
  reconcile: (key: K) => Promise<ReconcileResult | void>;
  clock?: Clock | undefined;
  /** First back-off after an error (default 250 ms); doubles with each further error of the key. */
  baseBackoffMs?: number | undefined;
  /** Back-off cap (default 30 s). */
  maxBackoffMs?: number | undefined;
  /** Keys reconciled at once (default 1); never two runs of one key. */
  concurrency?: number | undefined;
  onError?: ((key: K, err: unknown, info: FailureInfo) => void) | undefined;
  /** Nothing ready, nothing running (delayed keys may be waiting). */
  onIdle?: (() => void) | undefined;
}

/** Whether an error says retrying the same reconcile cannot succeed (the catalogue's `retryable: false`). */
export function isTerminalError(err: unknown): boolean {
  return isPilotError(err) && !err.retryable;
}

export class WorkQueue<K> {
  private readonly clock: Clock;
  private readonly base: number;
  private readonly cap: number;
  private readonly concurrency: number;
  /** Waiting to run, in arrival order; a Set, so a key waits once however often it is enqueued. */
  private readonly ready = new Set<K>();
  private readonly running = new Set<K>();
  /** Enqueued while running: run again when the current run ends. */
  private readonly dirty = new Set<K>();
  private readonly delayed = new Map<K, { at: number; handle: unknown }>();
  private readonly failures = new Map<K, number>();
  private readonly parked = new Set<K>();
  private idleWaiters: (() => void)[] = [];
  private stopped = false;
  private pumpQueued = false;

  constructor(private readonly opts: WorkQueueOptions<K>) {
    this.clock = opts.clock ?? systemClock;
    this.base = opts.baseBackoffMs ?? 250;
    this.cap = opts.maxBackoffMs ?? 30_000;
    this.concurrency = Math.max(1, opts.concurrency ?? 1);
  }

  /** Something about `key` changed: reconcile it soon (a parked key too; a pending delay is cut short). */
  enqueue(key: K): void {
    if (this.stopped) return;
    this.parked.delete(key);
    this.add(key);
  }

  /** A periodic resync: like `enqueue`, but a key parked by a terminal error stays parked. */
  resync(key: K): void {
    if (this.stopped || this.parked.has(key)) return;
    this.add(key);
  }

  /** Reconcile `key` after `ms`; an earlier requeue already pending wins. */
  requeueAfter(key: K, ms: number): void {
    if (this.stopped) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.clock.now() + ms;
    const pending = this.delayed.get(key);
    if (pending && pending.at <= at) return;
    if (pending) this.clock.clearTimer(pending.handle);
    const handle = this.clock.setTimer(() => {
      if (this.delayed.get(key)?.handle !== handle) return;
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { at, handle });
  }

  /** Drop what the queue remembers of a key that no longer exists (its delay, back-off, parking). */
  forget(key: K): void {
    this.cancelDelay(key);
    this.failures.delete(key);
    this.parked.delete(key);
  }

  /** Whether the key is parked by a terminal error. */
  isParked(key: K): boolean {
    return this.parked.has(key);
  }

  /** Nothing ready and nothing running. */
  get idle(): boolean {
    return this.ready.size === 0 && this.running.size === 0;
  }

  /** Counts, for tests and figures. */
  get stats(): { ready: number; running: number; delayed: number; parked: number; failing: number } {
    return {
      ready: this.ready.size,
      running: this.running.size,
      delayed: this.delayed.size,
      parked: this.parked.size,
      failing: this.failures.size,
    };
  }

  /** Resolves once nothing is ready or running (delayed keys are not waited for). */
  whenIdle(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** No more runs: pending delays are cancelled, waiting keys dropped; runs in progress finish. */
  stop(): void {
    this.stopped = true;
    for (const key of [...this.delayed.keys()]) this.cancelDelay(key);
    this.ready.clear();
    this.dirty.clear();
    this.settle();
  }

  private add(key: K): void {
    this.cancelDelay(key);
    if (this.running.has(key)) this.dirty.add(key);
    else this.ready.add(key);
    // Started from a microtask: a burst of enqueues in one synchronous stretch is one run.
    if (!this.pumpQueued) {
      this.pumpQueued = true;
      queueMicrotask(() => {
        this.pumpQueued = false;
        this.pump();
      });
    }
  }

  private cancelDelay(key: K): void {
    const pending = this.delayed.get(key);
    if (!pending) return;
    this.clock.clearTimer(pending.handle);
    this.delayed.delete(key);
  }

  private pump(): void {
    while (!this.stopped && this.running.size < this.concurrency && this.ready.size > 0) {
      const key = this.ready.values().next().value as K;
      this.ready.delete(key);
      this.running.add(key);
      // process() catches everything the handler throws; nothing here can reject.
      void this.process(key);
    }
  }

  private async process(key: K): Promise<void> {
    let result: ReconcileResult | void = undefined;
    let error: unknown;
    let failed = false;
    try {
      result = await this.opts.reconcile(key);
    } catch (err) {
      failed = true;
      error = err;
    }
    this.running.delete(key);
    if (!this.stopped) {
      if (!failed) {
        this.failures.delete(key);
        if (result?.requeueAfterMs !== undefined) this.requeueAfter(key, result.requeueAfterMs);
      } else {
        const attempt = (this.failures.get(key) ?? 0) + 1;
        const terminal = isTerminalError(error);
        let retryInMs: number | undefined;
        if (terminal) {
          this.failures.delete(key);
          this.cancelDelay(key);
          this.parked.add(key);
        } else {
          this.failures.set(key, attempt);
          retryInMs = Math.min(this.cap, this.base * 2 ** Math.min(attempt - 1, 30));
        }
        this.report(key, error, { attempt, terminal, retryInMs });
        // A change that arrived during the run is not lost to the back-off: it runs now (below).
        if (retryInMs !== undefined && !this.dirty.has(key)) this.requeueAfter(key, retryInMs);
      }
      if (this.dirty.delete(key)) this.add(key);
    }
    this.pump();
    this.settle();
  }

  private report(key: K, err: unknown, info: FailureInfo): void {
    try {
      this.opts.onError?.(key, err, info);
    } catch {
      // A failing error hook must not stop the queue.
    }
  }

  private settle(): void {
    if (!this.idle) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
    if (!this.stopped) {
      try {
        this.opts.onIdle?.();
      } catch {
        // as above
      }
    }
  }
}
