/**
 * The strategy planners driven through a small simulated world: instances start and become ready
 * one tick after they are created, drained ones stop a tick later, time moves by `tickMs`. Every
 * tick checks the strategy's promises (rolling: never more than N + S live, never fewer than N − U
 * available; canary: the stable set stays whole until the switch, weights only go up, a failed
 * check stops the canary at once) and every run must end.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { AnalysisFigures } from './analysis.js';
import { planApp, type PlannerInput, type PlannerInstance, type RolloutCommand, type RolloutProgress } from './rollout.js';
import { DEFAULT_ANALYSIS, type Strategy } from './strategy.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type SimInstance = Mutable<PlannerInstance> & { readyTicks: number };

interface World {
  instances: SimInstance[];
  active: number | undefined;
  rollout: { toRevision: number; elapsedMs: number; progress: RolloutProgress; strategy: Strategy } | undefined;
  finished: { status: string; reason: string | undefined } | undefined;
  seq: number;
  /** Per tick: the weight of the new revision. */
  weights: number[];
}

const inst = (id: string, revision: number, state: PlannerInstance['state'] = 'ready'): SimInstance => ({
  id,
  revision,
  desired: 'run',
  state,
  restarts: 0,
  lastError: undefined,
  drainingForMs: undefined,
  inflight: 0,
  readyTicks: state === 'ready' ? 100 : 0,
});

function world(n: number, strategy: Strategy): World {
  return {
    instances: Array.from({ length: n }, (_, k) => inst(`old-${k}`, 1)),
    active: 1,
    rollout: {
      toRevision: 2,
      elapsedMs: 0,
      progress: { step: 0, weight: 0, sinceMs: undefined, command: undefined, verdict: undefined },
      strategy,
    },
    finished: undefined,
    seq: 0,
    weights: [],
  };
}

interface TickOpts {
  n: number;
  tickMs: number;
  /** The new revision's behaviour: ready after a tick, or never. */
  newBecomesReady?: boolean;
  figures?: (w: World) => { canary: AnalysisFigures; stable: AnalysisFigures | undefined } | undefined;
  command?: RolloutCommand | undefined;
  readyTimeoutMs?: number;
}

/** One tick: plan, apply, move time. */
function tick(w: World, o: TickOpts): void {
  const r = w.rollout;
  const input: PlannerInput = {
    replicas: o.n,
    activeRevision: w.active,
    fixedPort: false,
    rollout: r && {
      toRevision: r.toRevision,
      elapsedMs: r.elapsedMs,
      readyTimeoutMs: o.readyTimeoutMs ?? 60_000,
      strategy: r.strategy,
      progress: o.command ? { ...r.progress, command: o.command } : r.progress,
      figures: o.figures?.(w),
    },
    instances: w.instances.map((i) => ({ ...i, readyForMs: i.state === 'ready' ? i.readyTicks * o.tickMs : undefined })),
    drainMs: 0,
    maxDrainMs: 30_000,
    crashLoopRestarts: 3,
  };
  for (const a of planApp(input)) {
    switch (a.type) {
      case 'create':
        for (let k = 0; k < a.count; k++) w.instances.push(inst(`r${a.revision}-${++w.seq}`, a.revision, 'starting'));
        break;
      case 'desire': {
        const i = w.instances.find((x) => x.id === a.id)!;
        i.desired = a.desired;
        if (a.desired === 'drain') i.drainingForMs = 0;
        break;
      }
      case 'activate':
        w.active = a.revision;
        break;
      case 'progress':
        if (r)
          r.progress = {
            step: a.step,
            weight: a.weight,
            sinceMs: a.restart ? 0 : r.progress.sinceMs,
            command: a.clearCommand ? undefined : r.progress.command,
            verdict: a.verdict ?? r.progress.verdict,
          };
        break;
      case 'finish':
        w.finished = { status: a.status, reason: a.reason };
        w.rollout = undefined;
        break;
      case 'release':
        throw new Error('no release phase here');
    }
  }
  // Time passes: stopped instances go, starting ones become ready (if they can), drains progress.
  w.instances = w.instances.filter((i) => i.desired !== 'stop');
  for (const i of w.instances) {
    if (i.state === 'starting' && (i.revision !== 2 || o.newBecomesReady !== false)) i.state = 'ready';
    else if (i.state === 'ready') i.readyTicks++;
    if (i.desired === 'drain') i.drainingForMs = (i.drainingForMs ?? 0) + o.tickMs;
  }
  if (w.rollout) {
    w.rollout.elapsedMs += o.tickMs;
    const p = w.rollout.progress;
    if (p.sinceMs !== undefined) w.rollout.progress = { ...p, sinceMs: p.sinceMs + o.tickMs };
  }
  w.weights.push(w.rollout?.progress.weight ?? (w.active === 2 ? 100 : 0));
}

const live = (w: World): World['instances'] => w.instances.filter((i) => i.desired === 'run');
const ready = (w: World): World['instances'] => live(w).filter((i) => i.state === 'ready');

describe('rolling planner', () => {
  it('never more than N + surge live, never fewer than N - unavailable ready; always ends on the new revision', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 0, max: 3 }),
        (n, surge, unavailable, minReadyTicks) => {
          fc.pre(surge + unavailable > 0);
          const tickMs = 500;
          const w = world(n, {
            type: 'rolling',
            maxSurge: { count: surge },
            maxUnavailable: { count: unavailable },
            minReadyMs: minReadyTicks * tickMs,
          });
          const minAvailable = n - Math.min(n, unavailable);
          for (let t = 0; t < 400 && w.rollout; t++) {
            tick(w, { n, tickMs });
            assert.ok(live(w).length <= n + surge, `tick ${t}: ${live(w).length} live > ${n} + ${surge}`);
            assert.ok(ready(w).length >= minAvailable, `tick ${t}: ${ready(w).length} ready < ${minAvailable}`);
          }
          assert.equal(w.finished?.status, 'succeeded', `ended: ${JSON.stringify(w.finished)}`);
          assert.equal(w.active, 2);
          // Settle: the old revision's instances drain and stop.
          for (let t = 0; t < 5; t++) tick(w, { n, tickMs });
          assert.deepEqual(
            live(w).map((i) => i.revision),
            Array(n).fill(2),
          );
          // Traffic moved up only.
          for (let k = 1; k < w.weights.length; k++) assert.ok(w.weights[k]! >= w.weights[k - 1]!, `weights ${w.weights.join(',')}`);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('percentages: surge rounds up, unavailable down (25% of 3 replicas: surge 1, unavailable 0)', () => {
    const w = world(3, { type: 'rolling', maxSurge: { percent: 25 }, maxUnavailable: { percent: 25 }, minReadyMs: 0 });
    tick(w, { n: 3, tickMs: 100 });
    assert.equal(live(w).length, 4, 'one surge instance');
    assert.ok(ready(w).length >= 3, 'none out before the surge instance is ready');
  });

  it('a new revision that never gets ready fails after the ready timeout; the old set stays whole', () => {
    const w = world(3, { type: 'rolling', maxSurge: { count: 1 }, maxUnavailable: { count: 0 }, minReadyMs: 0 });
    for (let t = 0; t < 100 && w.rollout; t++) tick(w, { n: 3, tickMs: 1000, newBecomesReady: false, readyTimeoutMs: 10_000 });
    assert.equal(w.finished?.status, 'failed');
    assert.match(w.finished!.reason!, /made no progress for 10s \(0 of 3 new instances available\)/);
    assert.deepEqual(
      live(w).map((i) => i.revision),
      [1, 1, 1],
    );
  });
});

const good = (requests: number): AnalysisFigures => ({ requests, errors: 0, p99Ms: 20 });

describe('rolling planner with analysis', () => {
  it('rolls back when the new revision fails a check while it serves beside the old one', () => {
    const w = world(4, {
      type: 'rolling',
      maxSurge: { count: 1 },
      maxUnavailable: { count: 0 },
      minReadyMs: 0,
      analysis: { ...DEFAULT_ANALYSIS, minRequests: 10 },
    });
    for (let t = 0; t < 50 && w.rollout; t++)
      tick(w, {
        n: 4,
        tickMs: 500,
        figures: (x) =>
          (x.rollout?.progress.weight ?? 0) > 0 ? { canary: { requests: 30, errors: 30, p99Ms: 5 }, stable: undefined } : undefined,
      });
    assert.equal(w.finished?.status, 'failed');
    assert.match(w.finished!.reason!, /analysis failed at \d+% of the traffic/);
    assert.equal(w.active, 1);
    for (let t = 0; t < 5; t++) tick(w, { n: 4, tickMs: 500 });
    assert.deepEqual(
      live(w).map((i) => i.revision),
      [1, 1, 1, 1],
      'the old set back to 4',
    );
  });
});

describe('canary planner', () => {
  const canary = (over: Partial<Extract<Strategy, { type: 'canary' }>> = {}): Strategy => ({
    type: 'canary',
    steps: [
      { weight: 10, pauseMs: 2000 },
      { weight: 50, pauseMs: 2000 },
      { weight: 100, pauseMs: 1000 },
    ],
    analysis: { ...DEFAULT_ANALYSIS, minRequests: 10 },
    ...over,
  });

  it('goes through its steps with healthy figures, the stable set whole until the switch, and promotes itself', () => {
    const n = 4;
    const w = world(n, canary());
    const stableCounts: number[] = [];
    for (let t = 0; t < 100 && w.rollout; t++) {
      tick(w, { n, tickMs: 500, figures: () => ({ canary: good(100), stable: good(1000) }) });
      if (w.rollout) stableCounts.push(live(w).filter((i) => i.revision === 1).length);
    }
    assert.equal(w.finished?.status, 'succeeded');
    assert.equal(w.active, 2);
    assert.ok(
      stableCounts.every((c) => c === n),
      `stable ${stableCounts.join(',')}`,
    );
    const distinct = [...new Set(w.weights)];
    assert.deepEqual(distinct, [0, 10, 50, 100]);
    // Each step held for its pause (2 s = 4 ticks) at least.
    assert.ok(w.weights.filter((x) => x === 10).length >= 4);
  });

  it('runs ceil(replicas × weight) canary instances per step, at least one', () => {
    const n = 10;
    const w = world(n, canary());
    const perStep = new Map<number, number>();
    for (let t = 0; t < 100 && w.rollout; t++) {
      tick(w, { n, tickMs: 500, figures: () => ({ canary: good(100), stable: good(1000) }) });
      if (w.rollout) perStep.set(w.rollout.progress.weight, live(w).filter((i) => i.revision === 2).length);
    }
    assert.equal(perStep.get(10), 5, 'at weight 10 the next step (50%) is being prepared: 5 instances');
    assert.equal(perStep.get(100), 10);
  });

  it('a failed check at any step stops the canary at once and sends all traffic back', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 1, max: 6 }), (badStep, n) => {
        const w = world(n, canary());
        const weightOfBad = [10, 50, 100][badStep]!;
        for (let t = 0; t < 100 && w.rollout; t++) {
          tick(w, {
            n,
            tickMs: 500,
            figures: (x) =>
              (x.rollout?.progress.weight ?? 0) >= weightOfBad
                ? { canary: { requests: 40, errors: 20, p99Ms: 10 }, stable: good(400) }
                : { canary: good(100), stable: good(1000) },
          });
        }
        assert.equal(w.finished?.status, 'failed');
        assert.match(
          w.finished!.reason!,
          new RegExp(`canary analysis failed at step ${badStep + 1}/3 \\(${weightOfBad}% of the traffic\\)`),
        );
        assert.equal(w.active, 1);
        assert.equal(w.weights.at(-1), 0);
        assert.ok(live(w).every((i) => i.revision === 1));
        assert.equal(live(w).length, n);
      }),
      { numRuns: 30 },
    );
  });

  it('never promotes on too little traffic; allowIdle lets it through', () => {
    const n = 2;
    const idle = world(n, canary());
    for (let t = 0; t < 60; t++) tick(idle, { n, tickMs: 500, figures: () => ({ canary: good(3), stable: good(30) }) });
    assert.ok(idle.rollout, 'still waiting after 30 s');
    assert.equal(idle.rollout.progress.weight, 10);
    assert.equal(idle.rollout.progress.verdict?.verdict, 'wait');
    assert.match(idle.rollout.progress.verdict!.reason, /3 of the 10 canary requests/);

    const allowed = world(n, canary({ analysis: { ...DEFAULT_ANALYSIS, minRequests: 10, allowIdle: true } }));
    for (let t = 0; t < 60 && allowed.rollout; t++)
      tick(allowed, { n, tickMs: 500, figures: () => ({ canary: good(0), stable: good(0) }) });
    assert.equal(allowed.finished?.status, 'succeeded');
  });

  it('without figures (the router cannot be read) it waits, saying why', () => {
    const w = world(2, canary());
    for (let t = 0; t < 20; t++) tick(w, { n: 2, tickMs: 500 });
    assert.ok(w.rollout);
    assert.match(w.rollout.progress.verdict!.reason, /no traffic figures/);
  });

  it('a step without pause waits for promote; promote moves one step; promote-full goes to 100 and ends; abort stops it', () => {
    const steps = [
      { weight: 20, pauseMs: undefined },
      { weight: 60, pauseMs: undefined },
      { weight: 100, pauseMs: 0 },
    ];
    const figures = (): { canary: AnalysisFigures; stable: AnalysisFigures } => ({ canary: good(100), stable: good(100) });
    const w = world(3, canary({ steps }));
    for (let t = 0; t < 20; t++) tick(w, { n: 3, tickMs: 500, figures });
    assert.equal(w.rollout?.progress.weight, 20, 'held at the first step');
    tick(w, { n: 3, tickMs: 500, figures, command: 'promote' });
    for (let t = 0; t < 5; t++) tick(w, { n: 3, tickMs: 500, figures });
    assert.equal(w.rollout?.progress.weight, 60, 'one step further, then held again');
    w.rollout!.progress = { ...w.rollout!.progress, command: 'promote-full' };
    for (let t = 0; t < 10 && w.rollout; t++) tick(w, { n: 3, tickMs: 500 });
    assert.equal(w.finished?.status, 'succeeded');
    assert.equal(w.active, 2);

    const a = world(3, canary({ steps }));
    for (let t = 0; t < 5; t++) tick(a, { n: 3, tickMs: 500, figures });
    tick(a, { n: 3, tickMs: 500, figures, command: 'abort' });
    assert.equal(a.finished?.status, 'failed');
    assert.match(a.finished!.reason!, /aborted \(`pilot abort`\) at 20% of the traffic/);
    assert.equal(a.active, 1);
    assert.ok(live(a).every((i) => i.revision === 1));
  });

  it('resumes a step with what was left of its pause (progress recorded, not reset)', () => {
    const w = world(2, canary());
    const figures = (): { canary: AnalysisFigures; stable: AnalysisFigures } => ({ canary: good(100), stable: good(100) });
    while (w.rollout && w.rollout.progress.weight !== 10) tick(w, { n: 2, tickMs: 500, figures });
    tick(w, { n: 2, tickMs: 500, figures });
    // A restarted control plane reads the same progress: elapsed (in memory) starts again at 0, the step does not.
    w.rollout!.elapsedMs = 0;
    const before = w.rollout!.progress.sinceMs!;
    assert.ok(before > 0);
    let ticks = 0;
    while (w.rollout && w.rollout.progress.weight === 10) {
      tick(w, { n: 2, tickMs: 500, figures });
      ticks++;
    }
    assert.ok(ticks * 500 <= 2000 - before + 1000, `${ticks} more ticks after ${before} ms of a 2 s pause`);
  });

  it('a first deploy, or a fixed port without namespaces, rolls out blue/green whatever the strategy', () => {
    const first = planApp({
      replicas: 2,
      activeRevision: undefined,
      fixedPort: false,
      rollout: { toRevision: 1, elapsedMs: 0, readyTimeoutMs: 60_000, strategy: canary() },
      instances: [],
      drainMs: 0,
      maxDrainMs: 1,
      crashLoopRestarts: 3,
    });
    assert.deepEqual(first, [{ type: 'create', revision: 1, count: 2 }]);
    const fixed = planApp({
      replicas: 1,
      activeRevision: 1,
      fixedPort: true,
      rollout: { toRevision: 2, elapsedMs: 0, readyTimeoutMs: 60_000, strategy: canary() },
      instances: [{ ...inst('a', 1) }],
      drainMs: 0,
      maxDrainMs: 1,
      crashLoopRestarts: 3,
    });
    assert.deepEqual(fixed, [{ type: 'desire', id: 'a', desired: 'drain' }], 'recreate');
  });
});

describe('blue/green keepPrevious', () => {
  it('keeps the previous set up after the switch, and in the steady state while its time runs', () => {
    const w = world(2, { type: 'blue-green', keepPreviousMs: 60_000 });
    for (let t = 0; t < 10 && w.rollout; t++) tick(w, { n: 2, tickMs: 500 });
    assert.equal(w.finished?.status, 'succeeded');
    assert.deepEqual(
      live(w)
        .map((i) => i.revision)
        .sort(),
      [1, 1, 2, 2],
    );
    const steady = (keepRevision: number | undefined) =>
      planApp({
        replicas: 2,
        activeRevision: 2,
        fixedPort: false,
        rollout: undefined,
        keepRevision,
        instances: live(w),
        drainMs: 0,
        maxDrainMs: 1,
        crashLoopRestarts: 3,
      });
    assert.deepEqual(steady(1), []);
    assert.deepEqual(
      steady(undefined).map((a) => a.type === 'desire' && a.desired),
      ['drain', 'drain'],
    );
  });
});

describe('blue/green watch', () => {
  const bg = (analysis = true): Strategy => ({
    type: 'blue-green',
    keepPreviousMs: 0,
    watchMs: 3000,
    ...(analysis ? { analysis: { ...DEFAULT_ANALYSIS, minRequests: 10 } } : {}),
  });

  it('gives the new set all the traffic first, keeps the old one up, and makes it active after the watch', () => {
    const w = world(2, bg());
    const seen: string[] = [];
    for (let t = 0; t < 30 && w.rollout; t++) {
      tick(w, { n: 2, tickMs: 500, figures: () => ({ canary: good(100), stable: good(100) }) });
      seen.push(`${w.weights.at(-1)}:${live(w).filter((i) => i.revision === 1).length}`);
    }
    assert.equal(w.finished?.status, 'succeeded');
    assert.ok(seen.includes('100:2'), `the old set stays whole while watched: ${seen.join(' ')}`);
    assert.ok(seen.filter((x) => x === '100:2').length >= 6, 'for the whole watch (3 s)');
    tick(w, { n: 2, tickMs: 500 });
    assert.deepEqual(
      live(w).map((i) => i.revision),
      [2, 2],
    );
  });

  it('sends the traffic back at once when analysis fails while watched; without analysis a crash loop does', () => {
    const w = world(2, bg());
    for (let t = 0; t < 30 && w.rollout; t++)
      tick(w, {
        n: 2,
        tickMs: 500,
        figures: (x) =>
          (x.rollout?.progress.weight ?? 0) === 100 ? { canary: { requests: 20, errors: 20, p99Ms: 1 }, stable: undefined } : undefined,
      });
    assert.equal(w.finished?.status, 'failed');
    assert.match(w.finished!.reason!, /analysis failed while revision 2 was watched/);
    assert.equal(w.active, 1);
    assert.deepEqual(
      live(w).map((i) => i.revision),
      [1, 1],
    );

    const c = world(2, bg(false));
    for (let t = 0; t < 4; t++) tick(c, { n: 2, tickMs: 500 });
    assert.equal(c.rollout?.progress.weight, 100);
    for (const i of c.instances) if (i.revision === 2) Object.assign(i, { state: 'backoff', restarts: 3, lastError: 'exited 1' });
    tick(c, { n: 2, tickMs: 500 });
    assert.equal(c.finished?.status, 'failed');
    assert.match(c.finished!.reason!, /crashed 3 times/);
    assert.equal(c.active, 1);
  });
});
