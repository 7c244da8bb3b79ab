import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { planApp, type PlannerInput, type PlannerInstance } from './rollout.js';

const inst = (p: Partial<PlannerInstance> & { id: string; revision: number }): PlannerInstance => ({
  desired: 'run',
  state: 'ready',
  restarts: 0,
  lastError: undefined,
  drainingForMs: undefined,
  inflight: 0,
  ...p,
});
const base = (p: Partial<PlannerInput>): PlannerInput => ({
  replicas: 1,
  activeRevision: undefined,
  fixedPort: false,
  rollout: undefined,
  instances: [],
  drainMs: 1000,
  maxDrainMs: 30_000,
  crashLoopRestarts: 3,
  ...p,
});

describe('rollout planner', () => {
  it("puts the failing instance's last lines of output into the reason", () => {
    const a = planApp(
      base({
        activeRevision: 1,
        rollout: { toRevision: 2, elapsedMs: 5, readyTimeoutMs: 60_000 },
        instances: [
          inst({ id: 'a', revision: 1 }),
          inst({
            id: 'b',
            revision: 2,
            state: 'backoff',
            restarts: 3,
            lastError: 'exited with code 1',
            logTail: 'booting\nFATAL: DATABASE_URL is not set',
          }),
        ],
      }),
    );
    const reason = (a.find((x) => x.type === 'finish') as { reason: string }).reason;
    assert.equal(
      reason,
      'instance b of revision 2 crashed 3 times: exited with code 1\n  last output of b:\n    booting\n    FATAL: DATABASE_URL is not set',
    );
    const slow = planApp(
      base({
        activeRevision: 1,
        rollout: { toRevision: 2, elapsedMs: 61_000, readyTimeoutMs: 60_000 },
        instances: [
          inst({ id: 'a', revision: 1 }),
          inst({ id: 'b', revision: 2, state: 'starting', lastError: 'health check GET / failed: HTTP 503', logTail: 'waiting for redis' }),
        ],
      }),
    );
    assert.match(
      (slow.find((x) => x.type === 'finish') as { reason: string }).reason,
      /not ready within 60s: health check GET \/ failed: HTTP 503\n  last output of b:\n    waiting for redis$/,
    );
  });

  describe('release phase', () => {
    const r = (elapsedMs = 5) => ({ toRevision: 2, elapsedMs, readyTimeoutMs: 60_000, release: true, releaseTimeoutMs: 30_000 });
    const rel = (p: Partial<PlannerInstance>) => inst({ id: 'rel', revision: 2, kind: 'release', state: 'starting', ...p });

    it('runs it first, alone: nothing else moves while it runs', () => {
      assert.deepEqual(planApp(base({ activeRevision: 1, rollout: r(), instances: [inst({ id: 'a', revision: 1 })] })), [
        { type: 'release', revision: 2 },
      ]);
      assert.deepEqual(
        planApp(base({ activeRevision: 1, fixedPort: true, rollout: r(), instances: [inst({ id: 'a', revision: 1 }), rel({})] })),
        [],
      );
    });

    it('goes on with the rollout once it exited 0, and stops it when the rollout ends', () => {
      const starting = planApp(
        base({ activeRevision: 1, rollout: r(), instances: [inst({ id: 'a', revision: 1 }), rel({ state: 'stopped' })] }),
      );
      assert.deepEqual(starting, [{ type: 'create', revision: 2, count: 1 }]);
      const done = planApp(
        base({
          activeRevision: 1,
          rollout: r(),
          instances: [inst({ id: 'a', revision: 1 }), rel({ state: 'stopped' }), inst({ id: 'b', revision: 2 })],
        }),
      );
      assert.deepEqual(
        done.map((x) => x.type),
        ['activate', 'desire', 'desire', 'finish'],
      );
      assert.ok(done.some((x) => x.type === 'desire' && x.id === 'rel' && x.desired === 'stop'));
    });

    it('fails the rollout with its output when it fails, and the old revision stays', () => {
      const a = planApp(
        base({
          activeRevision: 1,
          rollout: r(),
          instances: [
            inst({ id: 'a', revision: 1 }),
            rel({
              state: 'failed',
              lastError: 'release phase exited with code 3 after 1s',
              logTail: 'migration 007 failed: column exists',
            }),
          ],
        }),
      );
      assert.deepEqual(a[0], { type: 'desire', id: 'rel', desired: 'stop' });
      assert.equal(a[1]!.type, 'finish');
      assert.equal(
        (a[1] as { reason: string }).reason,
        'release phase of revision 2 failed: release phase exited with code 3 after 1s\n  last output of rel:\n    migration 007 failed: column exists',
      );
      assert.ok(!a.some((x) => x.type === 'activate' || x.type === 'create' || (x.type === 'desire' && x.id === 'a')));
    });

    it('gives up when it never finishes, and the ready deadline starts after its own', () => {
      const late = planApp(base({ activeRevision: 1, rollout: r(91_000), instances: [inst({ id: 'a', revision: 1 }), rel({})] }));
      assert.match(JSON.stringify(late), /release phase of revision 2 failed: not finished within 90s/);
      const ok = planApp(
        base({
          activeRevision: 1,
          rollout: r(100_000),
          instances: [inst({ id: 'a', revision: 1 }), rel({ state: 'stopped' }), inst({ id: 'b', revision: 2, state: 'starting' })],
        }),
      );
      assert.deepEqual(ok, []);
    });

    it('stops a release instance left over without a rollout', () => {
      assert.deepEqual(planApp(base({ activeRevision: 2, instances: [inst({ id: 'b', revision: 2 }), rel({ state: 'stopped' })] })), [
        { type: 'desire', id: 'rel', desired: 'stop' },
      ]);
    });
  });

  it('starts the new revision beside the old one', () => {
    const a = planApp(
      base({
        activeRevision: 1,
        rollout: { toRevision: 2, elapsedMs: 0, readyTimeoutMs: 60_000 },
        instances: [inst({ id: 'a', revision: 1 })],
      }),
    );
    assert.deepEqual(a, [{ type: 'create', revision: 2, count: 1 }]);
  });

  it('switches traffic only when every new instance is ready, then drains the old', () => {
    const waiting = planApp(
      base({
        replicas: 2,
        activeRevision: 1,
        rollout: { toRevision: 2, elapsedMs: 10, readyTimeoutMs: 60_000 },
        instances: [inst({ id: 'a', revision: 1 }), inst({ id: 'b', revision: 2 }), inst({ id: 'c', revision: 2, state: 'starting' })],
      }),
    );
    assert.deepEqual(waiting, []);
    const done = planApp(
      base({
        replicas: 2,
        activeRevision: 1,
        rollout: { toRevision: 2, elapsedMs: 10, readyTimeoutMs: 60_000 },
        instances: [inst({ id: 'a', revision: 1 }), inst({ id: 'b', revision: 2 }), inst({ id: 'c', revision: 2 })],
      }),
    );
    assert.deepEqual(done, [
      { type: 'activate', revision: 2 },
      { type: 'desire', id: 'a', desired: 'drain' },
      { type: 'finish', status: 'succeeded', reason: undefined },
    ]);
  });

  it('abandons a revision that is not ready by the deadline, keeping the old one', () => {
    const a = planApp(
      base({
        activeRevision: 1,
        rollout: { toRevision: 2, elapsedMs: 61_000, readyTimeoutMs: 60_000 },
        instances: [
          inst({ id: 'a', revision: 1 }),
          inst({ id: 'b', revision: 2, state: 'starting', lastError: 'health check GET / failed: ECONNREFUSED' }),
        ],
      }),
    );
    assert.deepEqual(a[0], { type: 'desire', id: 'b', desired: 'stop' });
    assert.equal(a[1]!.type, 'finish');
    assert.match((a[1] as { reason: string }).reason, /not ready within 60s: health check/);
    assert.ok(!a.some((x) => x.type === 'activate'));
  });

  it('fails fast on a crash loop', () => {
    const a = planApp(
      base({
        activeRevision: 1,
        rollout: { toRevision: 2, elapsedMs: 5, readyTimeoutMs: 60_000 },
        instances: [
          inst({ id: 'a', revision: 1 }),
          inst({ id: 'b', revision: 2, state: 'backoff', restarts: 3, lastError: 'exited with code 1' }),
        ],
      }),
    );
    assert.match(JSON.stringify(a), /crashed 3 times: exited with code 1/);
  });

  it('with a fixed port, stops the old instance before starting the new one', () => {
    const r = { toRevision: 2, elapsedMs: 5, readyTimeoutMs: 60_000 };
    assert.deepEqual(planApp(base({ fixedPort: true, activeRevision: 1, rollout: r, instances: [inst({ id: 'a', revision: 1 })] })), [
      { type: 'desire', id: 'a', desired: 'drain' },
    ]);
    assert.deepEqual(
      planApp(base({ fixedPort: true, activeRevision: 1, rollout: r, instances: [inst({ id: 'a', revision: 1, desired: 'stop' })] })),
      [],
    );
    assert.deepEqual(planApp(base({ fixedPort: true, activeRevision: 1, rollout: r, instances: [] })), [
      { type: 'create', revision: 2, count: 1 },
    ]);
  });

  it('stops a draining instance once drained, or after the cap with requests in flight', () => {
    const i = (ms: number, inflight: number) => inst({ id: 'a', revision: 1, desired: 'drain', drainingForMs: ms, inflight });
    assert.deepEqual(planApp(base({ instances: [i(500, 0)] })), []);
    assert.deepEqual(planApp(base({ instances: [i(1500, 1)] })), []);
    assert.deepEqual(planApp(base({ instances: [i(1500, 0)] })), [{ type: 'desire', id: 'a', desired: 'stop' }]);
    assert.deepEqual(planApp(base({ instances: [i(31_000, 3)] })), [{ type: 'desire', id: 'a', desired: 'stop' }]);
  });

  it('keeps the replica count in steady state', () => {
    assert.deepEqual(planApp(base({ replicas: 3, activeRevision: 1, instances: [inst({ id: 'a', revision: 1 })] })), [
      { type: 'create', revision: 1, count: 2 },
    ]);
    const down = planApp(
      base({
        replicas: 1,
        activeRevision: 1,
        instances: [inst({ id: 'a', revision: 1 }), inst({ id: 'b', revision: 1, state: 'starting' })],
      }),
    );
    assert.deepEqual(down, [{ type: 'desire', id: 'b', desired: 'drain' }]);
  });

  it('never activates a revision that has fewer ready instances than replicas (property)', () => {
    const states = fc.constantFrom('pending', 'starting', 'ready', 'unhealthy', 'backoff', 'failed', 'stopping', 'stopped' as const);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.array(
          fc.record({
            revision: fc.integer({ min: 1, max: 3 }),
            state: states,
            desired: fc.constantFrom('run', 'drain', 'stop' as const),
            restarts: fc.integer({ min: 0, max: 5 }),
          }),
          { maxLength: 12 },
        ),
        fc.integer({ min: 0, max: 120_000 }),
        (replicas, raw, elapsedMs) => {
          const instances = raw.map((r, k) => inst({ id: `i${k}`, ...r, drainingForMs: r.desired === 'drain' ? 0 : undefined }));
          const actions = planApp(
            base({ replicas, activeRevision: 1, rollout: { toRevision: 3, elapsedMs, readyTimeoutMs: 60_000 }, instances }),
          );
          const activates = actions.some((a) => a.type === 'activate');
          const ready = instances.filter((i) => i.revision === 3 && i.desired === 'run' && i.state === 'ready').length;
          if (activates) assert.ok(ready >= replicas);
          const finishes = actions.filter((a) => a.type === 'finish');
          assert.ok(finishes.length <= 1);
          if (finishes[0] && (finishes[0] as { status: string }).status === 'failed') assert.ok(!activates);
        },
      ),
    );
  });
});

describe('rollout planner: surplus and boundaries', () => {
  it('drains new instances beyond the replica count when the rollout succeeds', () => {
    const a = planApp(
      base({
        replicas: 1,
        activeRevision: 1,
        rollout: { toRevision: 2, elapsedMs: 10, readyTimeoutMs: 60_000 },
        instances: [inst({ id: 'old', revision: 1 }), inst({ id: 'n1', revision: 2 }), inst({ id: 'n2', revision: 2 })],
      }),
    );
    assert.deepEqual(a, [
      { type: 'activate', revision: 2 },
      { type: 'desire', id: 'old', desired: 'drain' },
      { type: 'desire', id: 'n2', desired: 'drain' },
      { type: 'finish', status: 'succeeded', reason: undefined },
    ]);
  });

  it('keeps waiting at exactly the ready deadline and gives up just after it', () => {
    const at = (elapsedMs: number) =>
      planApp(
        base({
          activeRevision: 1,
          rollout: { toRevision: 2, elapsedMs, readyTimeoutMs: 60_000 },
          instances: [inst({ id: 'a', revision: 1 }), inst({ id: 'b', revision: 2, state: 'starting' })],
        }),
      );
    assert.deepEqual(at(60_000), []);
    assert.equal(at(60_001).at(-1)!.type, 'finish');
  });

  it('fails a crash loop at exactly crashLoopRestarts restarts, not one before', () => {
    const at = (restarts: number) =>
      planApp(
        base({
          activeRevision: 1,
          rollout: { toRevision: 2, elapsedMs: 10, readyTimeoutMs: 60_000 },
          instances: [
            inst({ id: 'a', revision: 1 }),
            inst({ id: 'b', revision: 2, state: 'backoff', restarts, lastError: 'exited with code 1' }),
          ],
        }),
      );
    assert.ok(!at(2).some((x) => x.type === 'finish'));
    assert.deepEqual(at(3).at(-1), {
      type: 'finish',
      status: 'failed',
      reason: 'instance b of revision 2 crashed 3 times: exited with code 1',
    });
  });

  it('stops a draining instance at exactly drainMs when idle, and at exactly maxDrainMs when busy', () => {
    const stopOf = (drainingForMs: number, inflight: number) =>
      planApp(
        base({
          activeRevision: 1,
          instances: [inst({ id: 'a', revision: 1 }), inst({ id: 'd', revision: 0, desired: 'drain', drainingForMs, inflight })],
        }),
      ).some((x) => x.type === 'desire' && x.id === 'd' && x.desired === 'stop');
    assert.equal(stopOf(999, 0), false);
    assert.equal(stopOf(1000, 0), true);
    assert.equal(stopOf(29_999, 1), false);
    assert.equal(stopOf(30_000, 1), true);
  });
});

describe('rollout planner: steady state (mutation survivors)', () => {
  it('drains live instances of other revisions, keeps the active ones, and leaves drained ones alone', () => {
    const a = planApp(
      base({
        replicas: 1,
        activeRevision: 2,
        instances: [
          inst({ id: 'old', revision: 1 }),
          inst({ id: 'cur', revision: 2 }),
          inst({ id: 'gone', revision: 1, desired: 'stop', state: 'stopped' }),
        ],
      }),
    );
    assert.deepEqual(a, [{ type: 'desire', id: 'old', desired: 'drain' }]);
  });

  it('scales down by draining the not-ready first, and scales up by the missing count only', () => {
    const down = planApp(
      base({
        replicas: 1,
        activeRevision: 1,
        instances: [inst({ id: 'r', revision: 1 }), inst({ id: 's', revision: 1, state: 'starting' })],
      }),
    );
    assert.deepEqual(down, [{ type: 'desire', id: 's', desired: 'drain' }]);
    const up = planApp(
      base({
        replicas: 3,
        activeRevision: 1,
        instances: [inst({ id: 'r', revision: 1 }), inst({ id: 'x', revision: 1, desired: 'drain', drainingForMs: 0 })],
      }),
    );
    assert.deepEqual(up, [{ type: 'create', revision: 1, count: 2 }]);
    assert.deepEqual(planApp(base({ replicas: 1, activeRevision: 1, instances: [inst({ id: 'r', revision: 1 })] })), []);
  });

  it('creates only the missing new instances during a rollout, and reports a failed start in its own words', () => {
    const a = planApp(
      base({
        replicas: 3,
        activeRevision: 1,
        rollout: { toRevision: 2, elapsedMs: 10, readyTimeoutMs: 60_000 },
        instances: [inst({ id: 'o', revision: 1 }), inst({ id: 'n', revision: 2, state: 'starting' })],
      }),
    );
    assert.deepEqual(a, [{ type: 'create', revision: 2, count: 2 }]);
    const f = planApp(
      base({
        activeRevision: 1,
        rollout: { toRevision: 2, elapsedMs: 10, readyTimeoutMs: 60_000 },
        instances: [inst({ id: 'o', revision: 1 }), inst({ id: 'n', revision: 2, state: 'failed', lastError: undefined })],
      }),
    );
    assert.equal((f.at(-1) as { reason: string }).reason.split('\n')[0], 'instance n of revision 2 failed to start: unknown error');
  });

  it('with a fixed port, starts the new instance only once every old one has stopped', () => {
    const at = (oldState: 'stopping' | 'stopped') =>
      planApp(
        base({
          fixedPort: true,
          activeRevision: 1,
          rollout: { toRevision: 2, elapsedMs: 10, readyTimeoutMs: 60_000 },
          instances: [inst({ id: 'o', revision: 1, desired: 'stop', state: oldState })],
        }),
      );
    assert.deepEqual(at('stopping'), []);
    assert.deepEqual(at('stopped'), [{ type: 'create', revision: 2, count: 1 }]);
  });
});
