/**
 * kill -9 of `pilot up` (control plane + local agent) 3 s into the 15 s pause of a canary's first step,
 * under a steady request loop through the router (its own process: it keeps serving its last
 * table): once started again, the rollout resumes from the recorded step with what was left of its
 * pause (not from the start, not skipping it), goes through its other steps and promotes itself,
 * with 0 failed requests.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, sleep, waitFor } from '../integration/harness.js';
import { commitRevision, makeStrategyRepo, RequestLoop } from '../integration/strategy-app.js';

const h = new Harness();
const PAUSE_MS = 15_000;
const STRATEGY = `
type: canary
steps: [{weight: 30, pause: ${PAUSE_MS / 1000}s}, {weight: 60, pause: 2s}, {weight: 100}]
analysis: {maxErrorRate: 1%, minRequests: 10, window: 5s}
`;

interface Ev {
  time: number;
  kind: string;
  payload: { rollout?: number; step?: number; weight?: number; status?: string; reason?: string };
}

async function stepEvents(rollout: number): Promise<Ev[]> {
  const r = await h.apiCall('GET', '/api/v1/events?app=cr&limit=500');
  return (r.json.events as Ev[]).filter((e) => e.kind === 'rollout.step' && e.payload.rollout === rollout);
}

describe('fault: kill -9 of the control plane in the middle of a canary step', { timeout: 300_000 }, () => {
  let repo = '';
  before(async () => {
    await h.startUp();
    repo = await makeStrategyRepo(h, 'cr', 2, STRATEGY);
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
  after(() => h.cleanup());

  it('resumes the recorded step with what was left of its pause, then promotes itself; 0 failed requests', async () => {
    await commitRevision(repo, 'good');
    const loop = new RequestLoop(h.router, 'cr.localhost', 3, 10);
    // pilot run follows the rollout; the kill ends it (its server is gone): the rollout goes on without it.
    const run = h.cli(['run', repo]);
    const rollout = await waitFor(
      'the canary at 30%',
      async () => {
        const st = (await h.apiCall('GET', '/api/v1/apps/cr')).json;
        return st.rollout?.weights.canary === 30 ? (st.rollout as { id: number }) : undefined;
      },
      120_000,
    );
    const took = (await stepEvents(rollout.id)).find((e) => e.payload.step === 0 && e.payload.weight === 30);
    assert.ok(took, 'the weight of step 1 was recorded');
    const before = (await h.apiCall('GET', `/api/v1/apps/cr/rollouts/${rollout.id}`)).json.rollout;
    assert.equal(before.progress.since, took.time, 'the pause counts from when the weight took effect');

    await sleep(3000); // into the pause
    const killedAt = Date.now();
    await h.killUp('SIGKILL');
    await run;
    await sleep(1500); // nothing decides anything now; the router keeps serving 70/30
    await h.startUp();
    const restartedAt = Date.now();

    // At once after the restart: still step 1 at 30 %, its recorded start unchanged, the rest of the pause left.
    const resumed = (await h.apiCall('GET', `/api/v1/apps/cr/rollouts/${rollout.id}`)).json.rollout;
    const view = (await h.apiCall('GET', '/api/v1/apps/cr')).json.rollout;
    const left = took.time + PAUSE_MS - Date.now();
    console.log(
      `# canary restart: killed ${killedAt - took.time} ms into a ${PAUSE_MS} ms pause, back after ${restartedAt - killedAt} ms; status says: ${view?.waiting}`,
    );
    if (left > 1500) {
      assert.equal(resumed.status, 'running');
      assert.equal(resumed.progress.step, 0, 'not skipped to the next step');
      assert.equal(resumed.progress.weight, 30, 'not started again from 0');
      assert.equal(resumed.progress.since, took.time, 'the pause is not restarted');
      const shown = Number(/the pause: (\d+)s left/.exec(view.waiting)?.[1]);
      assert.ok(Math.abs(shown * 1000 - left) <= 2000, `pilot status shows what is left of the pause (${view.waiting}; ${left} ms left)`);
    } else {
      console.log('# canary restart: the control plane came back after the pause was over; only the end is checked');
    }

    const done = await waitFor(
      'the rollout to end',
      async () => {
        const r = (await h.apiCall('GET', `/api/v1/apps/cr/rollouts/${rollout.id}`)).json.rollout;
        return r.status === 'running' ? undefined : r;
      },
      120_000,
    );
    await sleep(500);
    const s = await loop.stop();
    assert.equal(done.status, 'succeeded', JSON.stringify(done));
    assert.equal((await h.apiCall('GET', '/api/v1/apps/cr')).json.app.activeRevision, 2);

    // Step 2 began once the recorded pause was over: not before (skipped), and not a whole pause after the restart (restarted).
    const next = (await stepEvents(rollout.id)).find((e) => e.payload.step === 1);
    assert.ok(next, 'step 2 was recorded');
    const pauseSeen = next.time - took.time;
    assert.ok(
      pauseSeen >= PAUSE_MS,
      `step 2 began ${pauseSeen} ms after step 1's weight took effect: before its ${PAUSE_MS} ms pause was over`,
    );
    // The restarted control plane's first pass came before startUp returned: a pause started again
    // there would end after restartedAt - 1 s + PAUSE_MS.
    assert.ok(
      next.time < restartedAt + PAUSE_MS - 3000,
      `step 2 began ${next.time - restartedAt} ms after the restart: the pause was started again`,
    );
    const latest = Math.max(took.time + PAUSE_MS, restartedAt) + 4000;
    assert.ok(
      next.time <= latest,
      `step 2 began ${next.time - restartedAt} ms after the restart: the pause was started again (${pauseSeen} ms after step 1)`,
    );
    assert.equal(s.failed, 0, s.failures.join('\n'));
    assert.ok(s.okByRevision['2']! > 0);
    console.log(
      `FAULT canary-restart: step 1's ${PAUSE_MS / 1000}s pause lasted ${(pauseSeen / 1000).toFixed(1)}s across a kill -9 at ${((killedAt - took.time) / 1000).toFixed(1)}s; ` +
        `rollout ${done.status}; failed ${s.failed}/${s.total}`,
    );
  });
});
