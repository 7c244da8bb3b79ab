/**
 * Rollout strategies end to end (issue #13): `pilot up` as a real process (control plane, its router
 * process, a local agent), apps built and deployed by `pilot run` from real git repositories, a
 * request loop through the router counting every answer by status and revision. Canary: promotes
 * itself, rolled back on 5xx and on p99, waits when idle (allowIdle promotes), promote / promote
 * --full / abort, a newer deploy supersedes it; rolling and blue-green with zero failed requests;
 * a rolling target that never gets ready or crash-loops; bad strategy config refused by field.
 * Durations are short (pauses 1–3 s, windows 5 s, health every 200 ms); timeouts generous.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, sleep, waitFor, type CliResult } from './harness.js';
import { appYaml, commitRevision, makeStrategyRepo, RequestLoop, WeightWatch, type LoopSummary } from './strategy-app.js';

const h = new Harness();

interface Rollout {
  id: number;
  toRevision: number;
  fromRevision?: number;
  status: string;
  reason?: string;
  progress?: { step: number; weight: number; command?: string; verdict?: { verdict: string; reason: string } };
}
interface AppStatus {
  app: { activeRevision: number | null };
  rollouts: Rollout[];
  rollout: { id: number; step?: number; steps?: number; weights: { stable: number; canary: number }; waiting: string; verdict?: { verdict: string; reason: string } } | null;
  instances: { id: string; revision: number; desired: string; state: string }[];
}

async function status(app: string): Promise<AppStatus> {
  const r = await h.apiCall('GET', `/api/v1/apps/${app}`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json as AppStatus;
}

/** The app's instances of `revision` that are meant to run (or still running). */
async function live(app: string, revision: number): Promise<AppStatus['instances']> {
  return (await status(app)).instances.filter((i) => i.revision === revision && i.state !== 'stopped');
}

async function events(app: string, kind: string): Promise<{ kind: string; payload: Record<string, unknown> }[]> {
  const r = await h.apiCall('GET', `/api/v1/events?app=${app}&limit=500`);
  assert.equal(r.status, 200);
  return (r.json.events as { kind: string; payload: Record<string, unknown> }[]).filter((e) => e.kind === kind);
}

function ok(r: CliResult): void {
  assert.equal(r.code, 0, r.stdout + r.stderr);
}

const report = (what: string, s: LoopSummary): void =>
  console.log(`# ${what}: ${s.total} requests, ${s.failed} failed, by status ${JSON.stringify(s.byStatus)}, 2xx by revision ${JSON.stringify(s.okByRevision)}`);

const CANARY = `
type: canary
steps: [{weight: 20, pause: 2s}, {weight: 60, pause: 2s}, {weight: 100}]
analysis: {maxErrorRate: 1%, minRequests: 20, window: 5s}
`;

describe('rollout strategies through real agents and the real router', { timeout: 600_000 }, () => {
  before(async () => {
    await h.startUp();
  });
  after(() => h.cleanup());

  describe('canary', () => {
    let repo = '';

    it('a first deploy goes live at once whatever the strategy (nothing to be a canary of)', async () => {
      repo = await makeStrategyRepo(h, 'cn', 2, CANARY);
      const r = await h.cli(['run', repo]);
      ok(r);
      assert.match(r.stdout, /revision 1 of cn is live/);
      assert.equal((await status('cn')).app.activeRevision, 1);
    });

    it('a healthy canary promotes itself through its steps with plausible weights and 0 failed requests', async () => {
      await commitRevision(repo, 'good');
      const loop = new RequestLoop(h.router, 'cn.localhost');
      const watch = new WeightWatch(h, 'cn');
      const r = await h.cli(['run', repo]);
      await sleep(1000);
      await watch.stop();
      const s = await loop.stop();
      report('healthy canary', s);
      ok(r);
      assert.match(r.stdout, /canary step 1\/3: 20% of the traffic on revision 2/);
      assert.match(r.stdout, /canary step 2\/3: 60% of the traffic on revision 2/);
      assert.match(r.stdout, /revision 2 of cn is live/);
      assert.equal(s.failed, 0, s.failures.join('\n'));
      const shares = watch.shares(s.seen, 2);
      console.log(`# weights seen: ${JSON.stringify([...shares])}; changes ${JSON.stringify(watch.changes.map(([, st, w]) => [st, w]))}`);
      const at20 = shares.get(20);
      const at60 = shares.get(60);
      assert.ok(at20 && at20.requests >= 30, `too few requests at 20%: ${JSON.stringify(at20)}`);
      assert.ok(at20.share > 0.08 && at20.share < 0.35, `share at 20%: ${at20.share}`);
      assert.ok(at60 && at60.requests >= 30, `too few requests at 60%: ${JSON.stringify(at60)}`);
      assert.ok(at60.share > 0.45 && at60.share < 0.75, `share at 60%: ${at60.share}`);
      const st = await status('cn');
      assert.equal(st.app.activeRevision, 2);
      assert.equal(st.rollouts[0]!.status, 'succeeded');
      assert.equal(st.rollout, null);
      // The stable revision's instances go once the canary took over.
      await waitFor('revision 1 to stop', async () => ((await live('cn', 1)).length === 0 ? true : undefined), 30_000);
      const steps = await events('cn', 'rollout.step');
      assert.ok(steps.some((e) => e.payload.weight === 20) && steps.some((e) => e.payload.weight === 60), JSON.stringify(steps));
    });
  });
});
