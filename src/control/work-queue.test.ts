import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PilotError } from '../core/errors.js';
import { FakeClock, settle } from './test-clock.js';
import { WorkQueue, isTerminalError, type FailureInfo, type ReconcileResult } from './work-queue.js';

/** A queue whose handler records calls and answers what `script` says per key. */
function harness(
  script: (key: string, n: number) => ReconcileResult | void | Error | Promise<ReconcileResult | void>,
  opts: { concurrency?: number } = {},
) {
  const clock = new FakeClock();
  const calls: { key: string; at: number }[] = [];
  const errors: { key: string; info: FailureInfo }[] = [];
  const counts = new Map<string, number>();
  let idles = 0;
  const q = new WorkQueue<string>({
    clock,
    baseBackoffMs: 100,
    maxBackoffMs: 1000,
    concurrency: opts.concurrency,
    reconcile: async (key) => {
      const n = (counts.get(key) ?? 0) + 1;
      counts.set(key, n);
      calls.push({ key, at: clock.now() });
      const r = await script(key, n);
      if (r instanceof Error) throw r;
      return r;
    },
    onError: (key, _err, info) => errors.push({ key, info }),
    onIdle: () => idles++,
  });
  return { q, clock, calls, errors, count: (k: string) => counts.get(k) ?? 0, idles: () => idles };
}

describe('work queue', () => {
  it('reconciles a key enqueued ten times while it waits once', async () => {
    const h = harness(() => undefined);
    // Hold the queue busy on another key so "app" waits.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const q = new WorkQueue<string>({
      clock: h.clock,
      reconcile: async (k) => {
        h.calls.push({ key: k, at: 0 });
        if (k === 'busy') await gate;
      },
    });
    q.enqueue('busy');
    await settle();
    for (let i = 0; i < 10; i++) q.enqueue('app');
    assert.equal(q.stats.ready, 1);
    release();
    await q.whenIdle();
    assert.deepEqual(
      h.calls.map((c) => c.key),
      ['busy', 'app'],
    );
  });

  it('never runs two reconciles of one key at once; a change during a run runs it once more after', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    let release!: () => void;
    let gate = new Promise<void>((r) => (release = r));
    const seen: string[] = [];
    const q = new WorkQueue<string>({
      clock: new FakeClock(),
      concurrency: 4,
      reconcile: async (k) => {
        seen.push(k);
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await gate;
        inFlight--;
      },
    });
    q.enqueue('a');
    await settle();
    for (let i = 0; i < 5; i++) q.enqueue('a'); // while "a" runs
    await settle();
    assert.equal(maxInFlight, 1);
    const first = release;
    gate = new Promise<void>((r) => (release = r));
    first();
    await settle();
    release();
    await q.whenIdle();
    assert.deepEqual(seen, ['a', 'a']);
    assert.equal(maxInFlight, 1);
  });

  it('runs different keys concurrently up to the limit', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const q = new WorkQueue<string>({
      clock: new FakeClock(),
      concurrency: 2,
      reconcile: async () => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await gate;
        inFlight--;
      },
    });
    for (const k of ['a', 'b', 'c']) q.enqueue(k);
    await settle();
    assert.equal(maxInFlight, 2);
    assert.equal(q.stats.ready, 1);
    release();
    await q.whenIdle();
  });

  it('requeues after the asked delay, with time moved by the fake clock only', async () => {
    const h = harness((_k, n) => (n < 3 ? { requeueAfterMs: 500 } : undefined));
    h.q.enqueue('app');
    await h.q.whenIdle();
    assert.equal(h.count('app'), 1);
    await h.clock.advance(499);
    assert.equal(h.count('app'), 1, 'not before its time');
    await h.clock.advance(1);
    assert.equal(h.count('app'), 2);
    await h.clock.advance(500);
    assert.equal(h.count('app'), 3);
    await h.clock.advance(10_000);
    assert.equal(h.count('app'), 3, 'no requeue asked: nothing more');
    assert.deepEqual(
      h.calls.map((c) => c.at),
      [0, 500, 1000],
    );
    assert.equal(h.clock.pending, 0);
  });

  it('keeps the earlier of two requeues, and a change cuts a pending delay short', async () => {
    const h = harness(() => undefined);
    h.q.requeueAfter('app', 1000);
    h.q.requeueAfter('app', 300);
    h.q.requeueAfter('app', 2000);
    await h.clock.advance(300);
    assert.deepEqual(
      h.calls.map((c) => c.at),
      [300],
    );
    await h.clock.advance(5000);
    assert.equal(h.count('app'), 1, 'the later requeues were folded into the earlier one');
    h.q.requeueAfter('app', 1000);
    h.q.enqueue('app');
    await h.q.whenIdle();
    assert.equal(h.count('app'), 2);
    await h.clock.advance(5000);
    assert.equal(h.count('app'), 2, 'the delay was replaced by the change');
  });

  it('isolates a failing app: the others are reconciled, on time, while it backs off', async () => {
    const h = harness((k) => (k === 'bad' ? new Error('database row unreadable') : { requeueAfterMs: 250 }));
    for (const k of ['a', 'bad', 'b']) h.q.enqueue(k);
    await h.q.whenIdle();
    assert.deepEqual(
      h.calls.map((c) => c.key),
      ['a', 'bad', 'b'],
    );
    await h.clock.advance(1000);
    assert.equal(h.count('a'), 5);
    assert.equal(h.count('b'), 5);
    assert.ok(h.count('bad') >= 2 && h.count('bad') <= 4, `bad retried with back-off (${h.count('bad')})`);
    assert.ok(h.errors.every((e) => e.key === 'bad' && !e.info.terminal));
  });

  it('backs off exponentially up to the cap, and forgets the count on success', async () => {
    let failing = true;
    const h = harness(() => (failing ? new Error('transient') : undefined));
    h.q.enqueue('app');
    await h.q.whenIdle();
    await h.clock.advance(100 + 200 + 400 + 800 + 1000 + 1000);
    assert.deepEqual(
      h.calls.map((c) => c.at),
      [0, 100, 300, 700, 1500, 2500, 3500],
    );
    assert.deepEqual(
      h.errors.map((e) => e.info.retryInMs),
      [100, 200, 400, 800, 1000, 1000, 1000],
    );
    assert.deepEqual(
      h.errors.map((e) => e.info.attempt),
      [1, 2, 3, 4, 5, 6, 7],
    );
    failing = false;
    await h.clock.advance(1000);
    assert.equal(h.q.stats.failing, 0);
    assert.equal(h.q.stats.delayed, 0, 'success without requeue: nothing scheduled');
    failing = true;
    h.q.enqueue('app');
    await h.q.whenIdle();
    assert.equal(h.errors.at(-1)!.info.retryInMs, 100, 'the back-off starts again from the base');
  });

  it('parks a key on a terminal error until a change enqueues it; a resync does not wake it', async () => {
    const terminal = new PilotError('invalid_config', 'port must be a number');
    assert.equal(isTerminalError(terminal), true);
    let answer: Error | undefined = terminal;
    const h = harness(() => answer);
    h.q.enqueue('app');
    await h.q.whenIdle();
    assert.equal(h.errors.length, 1);
    assert.equal(h.errors[0]!.info.terminal, true);
    assert.equal(h.errors[0]!.info.retryInMs, undefined);
    assert.equal(h.q.isParked('app'), true);
    await h.clock.advance(60_000);
    h.q.resync('app');
    await settle();
    assert.equal(h.count('app'), 1, 'no retry of a terminal error, and the resync left it parked');
    answer = undefined;
    h.q.enqueue('app'); // a change (a new deploy)
    await h.q.whenIdle();
    assert.equal(h.count('app'), 2);
    assert.equal(h.q.isParked('app'), false);
  });

  it('retries a retryable PilotError (the catalogue says retryable: true)', async () => {
    const h = harness((_k, n) => (n === 1 ? new PilotError('unavailable', 'the node did not answer') : undefined));
    assert.equal(isTerminalError(new PilotError('unavailable', 'x')), false);
    assert.equal(isTerminalError(new Error('plain')), false);
    h.q.enqueue('app');
    await h.q.whenIdle();
    await h.clock.advance(100);
    assert.equal(h.count('app'), 2);
    assert.equal(h.errors[0]!.info.terminal, false);
  });

  it('a change during a failing run is reconciled at once, not after the back-off', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const clock = new FakeClock();
    let n = 0;
    const q = new WorkQueue<string>({
      clock,
      baseBackoffMs: 10_000,
      reconcile: async () => {
        n++;
        if (n === 1) {
          await gate;
          throw new Error('x');
        }
      },
    });
    q.enqueue('app');
    await settle();
    q.enqueue('app');
    release();
    await q.whenIdle();
    assert.equal(n, 2);
    assert.equal(q.stats.delayed, 0);
  });

  it('calls onIdle when it drains, and stop() cancels what waits', async () => {
    const h = harness(() => ({ requeueAfterMs: 100 }));
    h.q.enqueue('a');
    h.q.enqueue('b');
    await h.q.whenIdle();
    assert.ok(h.idles() >= 1);
    h.q.stop();
    assert.equal(h.clock.pending, 0);
    h.q.enqueue('a');
    await h.clock.advance(1000);
    assert.equal(h.count('a'), 1);
  });

  it('forget() drops the delay and back-off of a key that is gone', async () => {
    const h = harness(() => new Error('gone'));
    h.q.enqueue('app');
    await h.q.whenIdle();
    assert.equal(h.q.stats.delayed, 1);
    h.q.forget('app');
    assert.deepEqual(h.q.stats, { ready: 0, running: 0, delayed: 0, parked: 0, failing: 0 });
    await h.clock.advance(10_000);
    assert.equal(h.count('app'), 1);
  });
});
