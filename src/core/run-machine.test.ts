import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  applyRunChange,
  decideRunReport,
  isRunFinished,
  runTransitionAllowed,
  stepTransitionAllowed,
  type RunFacts,
  type RunReport,
} from './run-machine.js';
import type { RunStatus, StepName, StepRecord, StepStatus } from './types.js';

const STEPS: readonly StepName[] = ['source', 'build', 'package', 'publish', 'deploy'];
const RUN_STATUSES: readonly RunStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted', 'superseded'];
const STEP_STATUSES: readonly StepStatus[] = ['pending', 'running', 'succeeded', 'failed', 'skipped'];
const SHA = 'a'.repeat(40);
const DIGEST = `sha256:${'b'.repeat(64)}`;

function run(over: Partial<RunFacts> = {}): RunFacts {
  return {
    id: 7,
    status: 'running',
    steps: STEPS.map((name) => ({ name, status: 'pending' })),
    artifact: undefined,
    revision: undefined,
    rolloutId: undefined,
    commit: SHA,
    dirty: false,
    error: undefined,
    ...over,
  };
}
const withStep = (r: RunFacts, name: StepName, status: StepStatus): StepRecord[] =>
  r.steps.map((s) => (s.name === name ? { ...s, status } : s));

describe('run machine', () => {
  it('moves queued → running → one end state, recording when it ended', () => {
    const q = run({ status: 'queued' });
    const started = decideRunReport(q, { status: 'running' }, 5);
    assert.deepEqual(started, { ok: true, change: { status: 'running' } });
    const r = applyRunChange(q, started.ok ? started.change : {});
    for (const end of ['succeeded', 'failed', 'cancelled', 'interrupted', 'superseded'] as const) {
      assert.deepEqual(decideRunReport(r, { status: end }, 9), { ok: true, change: { status: end, finishedAt: 9 } }, end);
    }
  });

  it('lets a queued run end before it starts only by cancel, supersede or a failure to start', () => {
    const q = run({ status: 'queued' });
    assert.ok(runTransitionAllowed('queued', 'cancelled'));
    assert.ok(runTransitionAllowed('queued', 'superseded'));
    assert.ok(runTransitionAllowed('queued', 'failed'));
    for (const s of ['succeeded', 'interrupted'] as const) {
      const d = decideRunReport(q, { status: s }, 1);
      assert.equal(d.ok, false, s);
      assert.equal(!d.ok && d.code, 'run_transition');
    }
  });

  it('refuses a late report on an ended run and says how it ended', () => {
    for (const ended of ['cancelled', 'superseded', 'interrupted', 'succeeded', 'failed'] as const) {
      const r = run({ status: ended, error: `${ended} by someone\nsecond line` });
      for (const late of [
        { status: 'succeeded' },
        { status: 'running' },
        { steps: withStep(r, 'build', 'running') },
        { artifact: DIGEST },
        { error: 'late' },
      ] satisfies RunReport[]) {
        const d = decideRunReport(r, late, 1);
        if (late.status === ended) continue;
        assert.equal(d.ok, false, `${ended} ← ${JSON.stringify(late)}`);
        assert.equal(!d.ok && d.code, 'run_finished');
        assert.match(!d.ok ? d.message : '', new RegExp(`run #7 has already ended ${ended}: ${ended} by someone;`));
        assert.doesNotMatch(!d.ok ? d.message : '', /second line/);
      }
    }
  });

  it('accepts a report that changes nothing, also on an ended run (a retried request)', () => {
    const r = run({ status: 'succeeded', artifact: DIGEST, revision: 3 });
    assert.deepEqual(decideRunReport(r, { status: 'succeeded', artifact: DIGEST, revision: 3, steps: r.steps }, 1), {
      ok: true,
      change: {},
    });
    assert.deepEqual(decideRunReport(run(), { status: 'running' }, 1), { ok: true, change: {} }, 'the worker already claimed it');
  });

  it('moves steps pending → (running →) succeeded | failed | skipped, never back', () => {
    let r = run();
    for (const [name, to] of [
      ['source', 'running'],
      ['source', 'succeeded'],
      ['build', 'running'],
      ['build', 'failed'],
      ['package', 'skipped'],
      ['publish', 'succeeded'], // a start that was not reported
    ] as const) {
      const d = decideRunReport(r, { steps: withStep(r, name, to) }, 1);
      assert.ok(d.ok, `${name} → ${to}`);
      r = applyRunChange(r, d.change);
    }
    for (const [name, to] of [
      ['source', 'running'],
      ['source', 'pending'],
      ['build', 'succeeded'],
      ['build', 'running'],
      ['package', 'running'],
      ['package', 'pending'],
    ] as const) {
      const d = decideRunReport(r, { steps: withStep(r, name, to) }, 1);
      assert.equal(d.ok, false, `${name} → ${to}`);
      assert.equal(!d.ok && d.code, 'run_transition');
    }
  });

  it('merges reported steps by name (the others stay, in their order); refuses a step the run lacks or one named twice', () => {
    const r = run();
    const d = decideRunReport(r, { steps: [{ name: 'build', status: 'running', startedAt: 4 }] }, 1);
    assert.deepEqual(d.ok && d.change.steps?.map((s) => `${s.name}:${s.status}`), [
      'source:pending',
      'build:running',
      'package:pending',
      'publish:pending',
      'deploy:pending',
    ]);
    for (const same of [[], r.steps.slice(1), [...r.steps].reverse()])
      assert.deepEqual(decideRunReport(r, { steps: same }, 1), { ok: true, change: {} });
    const rollback = run({ steps: [{ name: 'deploy', status: 'running' }] });
    for (const [who, steps] of [
      [r, [...r.steps, { name: 'deploy', status: 'running' } as StepRecord]],
      [r, r.steps.map((s, i) => (i === 0 ? { ...s, name: 'build' as StepName } : s))],
      [rollback, [{ name: 'build', status: 'running' } as StepRecord]],
    ] as const) {
      const x = decideRunReport(who, { steps }, 1);
      assert.equal(x.ok, false, JSON.stringify(steps.map((s) => s.name)));
      assert.equal(!x.ok && x.code, 'run_transition');
    }
  });

  it('sets artifact, revision, rollout and commit once; restating the same value is fine', () => {
    const r = run({ commit: undefined });
    const d = decideRunReport(r, { artifact: DIGEST, revision: 2, rolloutId: 5, commit: SHA }, 1);
    assert.deepEqual(d, { ok: true, change: { artifact: DIGEST, revision: 2, rolloutId: 5, commit: SHA } });
    const set = applyRunChange(r, d.ok ? d.change : {});
    assert.deepEqual(decideRunReport(set, { artifact: DIGEST, revision: 2 }, 1), { ok: true, change: {} });
    for (const again of [{ artifact: `sha256:${'c'.repeat(64)}` }, { revision: 3 }, { rolloutId: 6 }, { commit: 'f'.repeat(40) }]) {
      const x = decideRunReport(set, again, 1);
      assert.equal(x.ok, false, JSON.stringify(again));
      assert.match(!x.ok ? x.message : '', /is already/);
    }
  });

  it('refuses a whole report when one part is illegal (nothing of it is written)', () => {
    const r = run({ artifact: DIGEST });
    const d = decideRunReport(r, { status: 'succeeded', artifact: `sha256:${'c'.repeat(64)}` }, 1);
    assert.equal(d.ok, false);
  });

  // Random reports from every party, in any order, against one run.
  const stepsArb = fc
    .array(fc.constantFrom(...STEP_STATUSES), { minLength: 5, maxLength: 5 })
    .map((ss) => ss.map((status, i): StepRecord => ({ name: STEPS[i]!, status })));
  const reportArb: fc.Arbitrary<RunReport> = fc.record(
    {
      status: fc.constantFrom(...RUN_STATUSES),
      steps: stepsArb,
      artifact: fc.constantFrom(DIGEST, `sha256:${'c'.repeat(64)}`),
      revision: fc.integer({ min: 1, max: 3 }),
      rolloutId: fc.integer({ min: 1, max: 3 }),
      error: fc.option(fc.constantFrom('boom', 'late'), { nil: null }),
    },
    { requiredKeys: [] },
  );

  it('property: no sequence of reports reopens or changes an ended run; each run ends in exactly one end state', () => {
    fc.assert(
      fc.property(fc.constantFrom<RunStatus>('queued', 'running'), fc.array(reportArb, { maxLength: 30 }), (start, reports) => {
        let r = run({ status: start, commit: undefined });
        const endings: RunStatus[] = [];
        let finishedAt: number | undefined;
        let endedAs: RunFacts | undefined;
        for (const [t, rep] of reports.entries()) {
          const d = decideRunReport(r, rep, t + 100);
          if (!d.ok) {
            assert.equal(d.code, isRunFinished(r.status) ? 'run_finished' : 'run_transition');
            continue;
          }
          const before = r;
          r = applyRunChange(r, d.change);
          if (d.change.status !== undefined) {
            assert.ok(runTransitionAllowed(before.status, d.change.status), `${before.status} → ${d.change.status}`);
            if (isRunFinished(d.change.status)) {
              endings.push(d.change.status);
              assert.equal(finishedAt, undefined, 'finishedAt set once');
              finishedAt = d.change.finishedAt;
              assert.equal(finishedAt, t + 100);
            }
          }
          for (const f of ['artifact', 'revision', 'rolloutId'] as const) {
            if (before[f] !== undefined) assert.equal(r[f], before[f], `${f} set once`);
          }
          for (const [i, s] of r.steps.entries()) {
            const was = before.steps[i]!.status;
            assert.ok(s.status === was || stepTransitionAllowed(was, s.status), `step ${s.name} ${was} → ${s.status}`);
          }
          if (endedAs) assert.deepEqual(r, endedAs, 'an ended run never changes');
          if (isRunFinished(r.status)) endedAs = r;
        }
        assert.ok(endings.length <= 1, `ended ${endings.join(', ')}`);
        if (isRunFinished(r.status)) assert.deepEqual(endings, [r.status]);
        else assert.deepEqual(endings, []);
      }),
      { numRuns: 2000 },
    );
  });

  it('property: a run driven by a well-behaved pipeline always reaches the end state it reports last', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5 }),
        fc.constantFrom<RunStatus>('succeeded', 'failed', 'cancelled', 'superseded'),
        (done, end) => {
          let r = run();
          const report = (rep: RunReport): void => {
            const d = decideRunReport(r, rep, 1);
            assert.ok(d.ok, JSON.stringify(rep) + (d.ok ? '' : d.message));
            r = applyRunChange(r, d.change);
          };
          for (const name of STEPS.slice(0, done)) {
            report({ steps: withStep(r, name, 'running') });
            report({ steps: withStep(r, name, 'succeeded') });
          }
          const current = STEPS[done];
          if (current)
            report({ steps: withStep(r, current, end === 'superseded' ? 'skipped' : end === 'succeeded' ? 'running' : 'failed') });
          report({ status: end });
          assert.equal(r.status, end);
        },
      ),
    );
  });
});
