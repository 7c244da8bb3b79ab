/**
 * The canary between two steps: the next step's instances are starting (up to the ready timeout)
 * while the canary keeps the step before's share of the traffic. Analysis must go on meanwhile.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AnalysisFigures } from './analysis.js';
import { planApp, type PlannerInput, type PlannerInstance } from './rollout.js';
import { DEFAULT_ANALYSIS, type Strategy } from './strategy.js';

const inst = (id: string, revision: number, state: PlannerInstance['state'] = 'ready'): PlannerInstance => ({
  id,
  revision,
  desired: 'run',
  state,
  restarts: 0,
  lastError: undefined,
  drainingForMs: undefined,
  inflight: 0,
});

const canary: Strategy = {
  type: 'canary',
  steps: [
    { weight: 10, pauseMs: 1000 },
    { weight: 50, pauseMs: 1000 },
    { weight: 100, pauseMs: 0 },
  ],
  analysis: { ...DEFAULT_ANALYSIS, minRequests: 20 },
};

/** 4 replicas, moving to step 2 (50 %: 2 canary instances) with one canary ready and one starting, 10 % in effect. */
function between(canaryFigures: AnalysisFigures): PlannerInput {
  return {
    replicas: 4,
    activeRevision: 1,
    fixedPort: false,
    rollout: {
      toRevision: 2,
      elapsedMs: 5000,
      readyTimeoutMs: 60_000,
      strategy: canary,
      progress: { step: 1, weight: 10, sinceMs: 500, command: undefined, verdict: undefined },
      figures: { canary: canaryFigures, stable: { requests: 900, errors: 0, p99Ms: 5 } },
    },
    instances: [inst('s1', 1), inst('s2', 1), inst('s3', 1), inst('s4', 1), inst('c1', 2), inst('c2', 2, 'starting')],
    drainMs: 1000,
    maxDrainMs: 30_000,
    crashLoopRestarts: 3,
  };
}

describe('canary between steps', () => {
  it('a canary that turns bad while the next step starts is rolled back at once, naming the weight in effect', () => {
    const actions = planApp(between({ requests: 100, errors: 30, p99Ms: 5 }));
    const finish = actions.find((a) => a.type === 'finish');
    assert.ok(finish && finish.type === 'finish', JSON.stringify(actions));
    assert.equal(finish.status, 'failed');
    assert.match(finish.reason!, /^canary analysis failed at step 1\/3 \(10% of the traffic\): error rate 30%/);
    assert.ok(actions.some((a) => a.type === 'desire' && a.id === 'c1' && a.desired === 'stop'));
    assert.ok(actions.some((a) => a.type === 'progress' && a.weight === 0));
    assert.ok(!actions.some((a) => a.type === 'progress' && a.weight === 50), 'never a higher weight for a failing canary');
  });

  it('a healthy canary between steps waits for the next instances, then takes the next weight', () => {
    const waiting = planApp(between({ requests: 100, errors: 0, p99Ms: 5 }));
    assert.ok(!waiting.some((a) => a.type === 'finish'), JSON.stringify(waiting));
    assert.ok(!waiting.some((a) => a.type === 'progress'));
    const input = between({ requests: 100, errors: 0, p99Ms: 5 });
    const ready: PlannerInput = { ...input, instances: input.instances.map((i) => (i.id === 'c2' ? inst('c2', 2) : i)) };
    const moved = planApp(ready);
    assert.ok(
      moved.some((a) => a.type === 'progress' && a.step === 1 && a.weight === 50),
      JSON.stringify(moved),
    );
  });
});
