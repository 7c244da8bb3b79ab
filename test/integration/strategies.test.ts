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
  rollout: {
    id: number;
    step?: number;
    steps?: number;
    weights: { stable: number; canary: number };
    waiting: string;
    verdict?: { verdict: string; reason: string };
  } | null;
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
  console.log(
    `# ${what}: ${s.total} requests, ${s.failed} failed, by status ${JSON.stringify(s.byStatus)}, 2xx by revision ${JSON.stringify(s.okByRevision)}`,
  );

const CANARY = `
type: canary
steps: [{weight: 20, pause: 4s}, {weight: 60, pause: 2s}, {weight: 100}]
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
      const run = h.cli(['run', repo]);
      // During step 1: pilot status shows the step, both weights with each revision's live figures, the verdict, the pause left.
      await waitFor('step 1 at 20%', async () => ((await status('cn')).rollout?.weights.canary === 20 ? true : undefined), 60_000);
      const text = (await h.cli(['status', 'cn'])).stdout;
      const r = await run;
      await sleep(1000);
      await watch.stop();
      const s = await loop.stop();
      report('healthy canary', s);
      console.log(`# pilot status during step 1:\n${text.split('\n').slice(0, 6).join('\n')}`);
      assert.match(text, /rollout #\d+ to revision 2: canary 20% → 60% → 100%, step 1\/3/);
      assert.match(
        text,
        /weights: revision 1 80% \([\d.]+ req\/s, 5xx 0\.00%, p99 [\d.]+ms\), revision 2 20% \([\d.]+ req\/s, 5xx 0\.00%, p99 [\d.]+ms\)/,
      );
      // The first verdict is recorded on the pass after the weight took effect: there may be none yet.
      if (/analysis:/.test(text)) assert.match(text, /\n {2}analysis: (pass|wait): /);
      assert.match(text, /waiting for (the pause: \d+s left|traffic for analysis|analysis to pass)/);
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
      assert.ok(at20.share > 0.12 && at20.share < 0.28, `share at 20%: ${at20.share}`);
      assert.ok(at60 && at60.requests >= 30, `too few requests at 60%: ${JSON.stringify(at60)}`);
      assert.ok(at60.share > 0.5 && at60.share < 0.7, `share at 60%: ${at60.share}`);
      const st = await status('cn');
      assert.equal(st.app.activeRevision, 2);
      assert.equal(st.rollouts[0]!.status, 'succeeded');
      assert.equal(st.rollout, null);
      // The stable revision's instances go once the canary took over.
      await waitFor('revision 1 to stop', async () => ((await live('cn', 1)).length === 0 ? true : undefined), 30_000);
      const steps = await events('cn', 'rollout.step');
      assert.ok(steps.some((e) => e.payload.weight === 20) && steps.some((e) => e.payload.weight === 60), JSON.stringify(steps));
    });

    it('a canary answering 500s is rolled back by itself at step 1: reason on the rollout, the run, the events and pilot status', async () => {
      await commitRevision(repo, 'fail500');
      const loop = new RequestLoop(h.router, 'cn.localhost');
      const r = await h.cli(['run', repo]);
      await sleep(1000); // traffic after the rollback: all on stable
      const s = await loop.stop();
      report('canary answering 500s', s);
      assert.notEqual(r.code, 0, r.stdout);
      // Fewer than minRequests so far: "N errors in M requests"; more (a slow pass): "error rate 100% (N of M requests in 5s)".
      const reason =
        /canary analysis failed at step 1\/3 \(20% of the traffic\): (\d+ errors? in \d+ requests?|error rate [\d.]+% \(\d+ of \d+ requests in 5s\))/;
      assert.match(r.stdout + r.stderr, reason);
      const st = await status('cn');
      assert.equal(st.app.activeRevision, 2, 'the stable revision stays active');
      assert.equal(st.rollouts[0]!.toRevision, 3);
      assert.equal(st.rollouts[0]!.status, 'failed');
      assert.match(st.rollouts[0]!.reason!, reason);
      assert.match(st.rollouts[0]!.reason!, /over max 1%|> max 1%/);
      const runs = JSON.parse((await h.cli(['runs', 'cn', '--json'])).stdout).runs as { status: string; error: string }[];
      assert.equal(runs[0]!.status, 'failed');
      assert.match(runs[0]!.error, reason);
      const finished = (await events('cn', 'rollout.finished')).filter((e) => e.payload.toRevision === 3);
      assert.equal(finished.length, 1, JSON.stringify(finished));
      assert.equal(finished[0]!.payload.status, 'failed');
      assert.match(String(finished[0]!.payload.reason), reason);
      const text = await h.cli(['status', 'cn']);
      ok(text);
      assert.match(text.stdout, /failed\s+.*canary analysis failed at step 1\/3/);
      // The canary's instances are stopped; every request after the rollback went to stable.
      await waitFor('the canary instances to stop', async () => ((await live('cn', 3)).length === 0 ? true : undefined), 30_000);
      const failedAt = s.seen.filter((x) => x.status !== 200).map((x) => x.end);
      assert.ok(failedAt.length > 0, 'the canary answered some 500s before it was rolled back');
      assert.ok(
        s.seen.every((x) => x.status === 200 || x.status === 500),
        `only 500s from the canary: ${s.failures.join('; ')}`,
      );
      const lastFail = Math.max(...failedAt);
      const after = s.seen.filter((x) => x.start > lastFail);
      assert.ok(after.length > 50 && after.every((x) => x.revision === 2), 'all traffic back on stable');
      console.log(
        `# bad canary: ${failedAt.length} failed request(s) of ${s.total}; first to last 5xx ${Math.round(lastFail - Math.min(...failedAt))} ms`,
      );
    });

    it('a slow canary (p99 over maxP99) is rolled back with the p99 reason', async () => {
      const slowStrategy = CANARY.replace('maxErrorRate: 1%', 'maxErrorRate: 1%, maxP99: 150ms');
      await commitRevision(repo, 'slow', appYaml('cn', 2, slowStrategy));
      const loop = new RequestLoop(h.router, 'cn.localhost');
      const r = await h.cli(['run', repo]);
      const s = await loop.stop();
      report('slow canary', s);
      assert.notEqual(r.code, 0, r.stdout);
      assert.equal(s.failed, 0, s.failures.join('\n'));
      const st = await status('cn');
      assert.equal(st.app.activeRevision, 2);
      assert.equal(st.rollouts[0]!.toRevision, 4);
      assert.equal(st.rollouts[0]!.status, 'failed');
      assert.match(st.rollouts[0]!.reason!, /canary analysis failed at step 1\/3 .*: p99 (\d+)ms over \d+ requests in 5s > max 150ms/);
      const p99 = Number(/p99 (\d+)ms/.exec(st.rollouts[0]!.reason!)![1]);
      assert.ok(p99 >= 290, `the measured p99 is the slow answers' (300 ms): ${p99}`);
      await waitFor('the slow canary to stop', async () => ((await live('cn', 4)).length === 0 ? true : undefined), 30_000);
    });

    it('a canary whose error rate is within maxErrorRate but over the stable one by more than maxErrorRateIncrease is rolled back', async () => {
      const vsStable = CANARY.replace('maxErrorRate: 1%', 'maxErrorRate: 50%, maxErrorRateIncrease: 5%');
      await commitRevision(repo, 'err10', appYaml('cn', 2, vsStable));
      const loop = new RequestLoop(h.router, 'cn.localhost');
      const r = await h.cli(['run', repo]);
      const s = await loop.stop();
      report('canary 10% errors vs stable 0%', s);
      assert.notEqual(r.code, 0, r.stdout);
      const st = await status('cn');
      assert.equal(st.app.activeRevision, 2);
      assert.equal(st.rollouts[0]!.status, 'failed');
      assert.match(
        st.rollouts[0]!.reason!,
        /canary analysis failed at step 1\/3 \(20% of the traffic\): error rate [\d.]+% is [\d.]+% over the stable revision's 0% in 5s > max increase 5%/,
      );
      assert.ok(s.failed > 0 && s.failed < s.total / 10, `only the canary's every 10th request failed: ${s.failed}/${s.total}`);
    });

    it('pilot promote moves a step without pause on, --full goes straight to 100, pilot abort stops the canary', async () => {
      const manual = `
type: canary
steps: [{weight: 25}, {weight: 50}, {weight: 100}]
analysis: {minRequests: 20, window: 5s}
`;
      await commitRevision(repo, 'good', appYaml('cn', 2, manual));
      const run = h.cli(['run', repo]);
      const waitingAt = async (weight: number): Promise<AppStatus> =>
        waitFor(
          `the canary to wait at ${weight}%`,
          async () => {
            const st = await status('cn');
            return st.rollout?.weights.canary === weight && /pilot promote/.test(st.rollout.waiting) ? st : undefined;
          },
          60_000,
        );
      const at25 = await waitingAt(25);
      assert.equal(at25.rollout!.step, 1);
      await sleep(1500); // no pause: it waits, it does not move on by itself
      assert.equal((await status('cn')).rollout?.weights.canary, 25);
      const text = await h.cli(['status', 'cn']);
      assert.match(text.stdout, /rollout #\d+ to revision 6: canary 25% → 50% → 100%, step 1\/3/);
      assert.match(text.stdout, /waiting for `pilot promote`/);
      const p = await h.cli(['promote', 'cn']);
      ok(p);
      assert.match(p.stdout, /revision 6 moves to its next step/);
      assert.equal((await waitingAt(50)).rollout!.step, 2);
      const full = await h.cli(['promote', 'cn', '--full']);
      ok(full);
      assert.match(full.stdout, /goes to 100%/);
      const r = await run;
      ok(r);
      assert.match(r.stdout, /revision 6 of cn is live/);
      const commands = (await events('cn', 'rollout.command')).map((e) => e.payload.command);
      assert.deepEqual(commands.slice(-2), ['promote', 'promote-full']);

      await commitRevision(repo, 'good');
      const run2 = h.cli(['run', repo]);
      await waitingAt(25);
      // Abort under traffic: the canary had a share; nothing fails on its way out.
      const loop = new RequestLoop(h.router, 'cn.localhost');
      await sleep(1000);
      const a = await h.cli(['abort', 'cn']);
      ok(a);
      assert.match(a.stdout, /aborted: all traffic goes back to the stable revision/);
      const r2 = await run2;
      assert.notEqual(r2.code, 0);
      assert.match(r2.stdout + r2.stderr, /aborted \(`pilot abort`\) at 25% of the traffic; revision 7 stopped/);
      const st = await status('cn');
      assert.equal(st.app.activeRevision, 6);
      assert.equal(st.rollouts[0]!.status, 'failed');
      await waitFor('the aborted canary to stop', async () => ((await live('cn', 7)).length === 0 ? true : undefined), 30_000);
      await sleep(500);
      const s = await loop.stop();
      report('abort under traffic', s);
      assert.ok(s.okByRevision['7']! > 0, 'the canary had traffic before the abort');
      assert.equal(s.failed, 0, s.failures.join('\n'));
      for (let k = 0; k < 20; k++) assert.equal(JSON.parse((await h.viaRouter('cn.localhost')).text).revision, '6');
    });

    it('promote or abort with nothing in progress: 409 no_rollout; an unknown app 404; a bad body 400', async () => {
      for (const verb of ['promote', 'abort']) {
        const res = await h.apiCall('POST', `/api/v1/apps/cn/${verb}`, {});
        assert.equal(res.status, 409, JSON.stringify(res.json));
        assert.equal(res.json.error.code, 'no_rollout');
        assert.match(res.json.error.message, new RegExp(`no rollout in progress to ${verb}`));
        assert.ok(res.json.error.hint);
        const cli = await h.cli([verb, 'cn']);
        assert.equal(cli.code, 1);
        assert.match(cli.stderr, new RegExp(`error: app "cn" has no rollout in progress to ${verb}`));
        assert.match(cli.stderr, /hint: /);
        const missing = await h.apiCall('POST', `/api/v1/apps/nope/${verb}`, {});
        assert.equal(missing.status, 404);
        assert.equal(missing.json.error.code, 'app_not_found');
      }
      const badName = await h.apiCall('POST', '/api/v1/apps/..%2Fcn/abort', {});
      assert.equal(badName.status, 400, JSON.stringify(badName.json));
      assert.equal(badName.json.error.code, 'invalid_name');
      const bad = await h.apiCall('POST', '/api/v1/apps/cn/promote', { full: 'yes' });
      assert.equal(bad.status, 400, JSON.stringify(bad.json));
      assert.equal((await h.apiCall('POST', '/api/v1/apps/cn/abort', {}, null)).status, 401);
    });
  });

  describe('an idle canary', () => {
    it('waits and says so (never promotes on zero data); a newer deploy with allowIdle supersedes it and promotes', async () => {
      const idle = (allowIdle: boolean): string => `
type: canary
steps: [{weight: 50, pause: 1s}, {weight: 100}]
analysis: {minRequests: 20, window: 5s, allowIdle: ${allowIdle}}
`;
      const repo = await makeStrategyRepo(h, 'idle', 1, idle(false));
      ok(await h.cli(['run', repo]));
      await commitRevision(repo, 'good');
      const first = h.cli(['run', repo]);
      const waiting = await waitFor(
        'the idle canary to say it waits for traffic',
        async () => {
          const st = await status('idle');
          return st.rollout && /traffic for analysis/.test(st.rollout.waiting) ? st : undefined;
        },
        60_000,
      );
      assert.equal(waiting.rollout!.weights.canary, 50);
      assert.match(waiting.rollout!.waiting, /0 of the 20 canary requests analysis needs \(5s window\)/);
      await sleep(3000); // well past its 1 s pause: still waiting
      const still = await status('idle');
      assert.equal(still.rollout?.step, 1);
      assert.equal(still.app.activeRevision, 1);
      const text = await h.cli(['status', 'idle']);
      assert.match(text.stdout, /analysis: wait: 0 of the 20 canary requests/);
      assert.match(text.stdout, /waiting for traffic for analysis/);
      const canaryIds = (await live('idle', 2)).map((i) => i.id);
      assert.equal(canaryIds.length, 1);

      // A newer deploy supersedes the waiting canary: its instance goes, the new one runs its own steps.
      await commitRevision(repo, 'good', appYaml('idle', 1, idle(true)));
      const second = await h.cli(['run', repo]);
      ok(second);
      assert.match(second.stdout, /canary step 1\/2: 50% of the traffic on revision 3/);
      assert.match(second.stdout, /revision 3 of idle is live/);
      const r1 = await first;
      assert.notEqual(r1.code, 0);
      assert.match(r1.stdout + r1.stderr, /superseded by revision 3/);
      await waitFor('the superseded canary to stop', async () => ((await live('idle', 2)).length === 0 ? true : undefined), 30_000);
      const st = await status('idle');
      assert.equal(st.app.activeRevision, 3);
      assert.ok(!st.instances.some((i) => canaryIds.includes(i.id) && i.desired === 'run'), JSON.stringify(st.instances));
      const orphans = (await h.apiCall('GET', '/api/v1/orphans')).json.orphans as unknown[];
      assert.deepEqual(orphans, [], 'no orphan');
      const steps = (await events('idle', 'rollout.step')).filter((e) => e.payload.toRevision === 3).map((e) => e.payload.weight);
      assert.ok(steps.includes(50), JSON.stringify(steps));
    });
  });

  describe('rolling and blue-green', () => {
    let repo = '';
    const rolling = (surge: number, unavailable: number): string => `
type: rolling
maxSurge: ${surge}
maxUnavailable: ${unavailable}
`;

    /** Polls the app's instances: the most meant to run at once, the fewest ready among them. */
    function instanceWatch(app: string): { stop: () => Promise<{ maxRun: number; minReady: number }> } {
      let running = true;
      let maxRun = 0;
      let minReady = Infinity;
      const done = (async () => {
        while (running) {
          try {
            const st = await status(app);
            const run = st.instances.filter((i) => i.desired === 'run');
            maxRun = Math.max(maxRun, run.length);
            minReady = Math.min(minReady, run.filter((i) => i.state === 'ready').length);
          } catch {
            // busy: the next poll
          }
          await sleep(100);
        }
      })();
      return {
        stop: async () => {
          running = false;
          await done;
          return { maxRun, minReady };
        },
      };
    }

    it('rolling, 4 replicas, maxSurge 1, maxUnavailable 0: never more than 5, never fewer than 4 ready, 0 failed requests', async () => {
      repo = await makeStrategyRepo(h, 'roll', 4, rolling(1, 0));
      ok(await h.cli(['run', repo]));
      await waitFor('4 instances ready', async () =>
        (await live('roll', 1)).filter((i) => i.state === 'ready').length === 4 ? true : undefined,
      );
      await commitRevision(repo, 'good');
      const loop = new RequestLoop(h.router, 'roll.localhost');
      const watch = instanceWatch('roll');
      const r = await h.cli(['run', repo]);
      await sleep(1000);
      const w = await watch.stop();
      const s = await loop.stop();
      report('rolling surge 1', s);
      console.log(`# rolling surge 1: at most ${w.maxRun} instances meant to run, at least ${w.minReady} ready`);
      ok(r);
      assert.match(r.stdout, /revision 2 of roll is live/);
      assert.equal(s.failed, 0, s.failures.join('\n'));
      assert.ok(s.okByRevision['1']! > 0 && s.okByRevision['2']! > 0, JSON.stringify(s.okByRevision));
      assert.ok(w.maxRun <= 5, `surge: ${w.maxRun} instances at once`);
      assert.ok(w.minReady >= 4, `unavailable: only ${w.minReady} ready`);
      await waitFor('revision 1 gone', async () => ((await live('roll', 1)).length === 0 ? true : undefined), 30_000);
      assert.equal((await live('roll', 2)).length, 4);
    });

    it('rolling with maxSurge 0, maxUnavailable 1 completes without ever exceeding 4 instances', async () => {
      await commitRevision(repo, 'good', appYaml('roll', 4, rolling(0, 1)));
      const loop = new RequestLoop(h.router, 'roll.localhost');
      const watch = instanceWatch('roll');
      const run = h.cli(['run', repo]);
      // A rolling rollout has no steps to promote (abort would stop it): 409 no_rollout, saying so.
      await waitFor('the rolling rollout to run', async () => ((await status('roll')).rollout ? true : undefined), 60_000);
      const promote = await h.apiCall('POST', '/api/v1/apps/roll/promote', {});
      assert.equal(promote.status, 409, JSON.stringify(promote.json));
      assert.equal(promote.json.error.code, 'no_rollout');
      assert.match(promote.json.error.message, /is rolling: only a canary has steps to promote/);
      const r = await run;
      await sleep(1000);
      const w = await watch.stop();
      const s = await loop.stop();
      report('rolling surge 0 unavailable 1', s);
      console.log(`# rolling surge 0: at most ${w.maxRun} instances meant to run, at least ${w.minReady} ready`);
      ok(r);
      assert.match(r.stdout, /revision 3 of roll is live/);
      assert.ok(w.maxRun <= 4, `no surge: ${w.maxRun} instances at once`);
      assert.ok(w.minReady >= 3, `unavailable 1: only ${w.minReady} ready`);
      // A drained instance leaves the routing table before it stops: nothing fails either.
      assert.equal(s.failed, 0, s.failures.join('\n'));
      await waitFor('revision 2 gone', async () => ((await live('roll', 2)).length === 0 ? true : undefined), 30_000);
    });

    for (const mode of ['never-ready', 'crash'] as const) {
      it(`a rolling target that ${mode === 'crash' ? 'crash-loops' : 'never becomes ready'} is rolled back; the old revision stays at 4`, async () => {
        await commitRevision(repo, mode, appYaml('roll', 4, rolling(1, 0), '', '5s'));
        const before = (await status('roll')).app.activeRevision!;
        const loop = new RequestLoop(h.router, 'roll.localhost');
        const r = await h.cli(['run', repo]);
        const s = await loop.stop();
        report(`rolling ${mode}`, s);
        assert.notEqual(r.code, 0, r.stdout);
        assert.equal(s.failed, 0, s.failures.join('\n'));
        const st = await status('roll');
        assert.equal(st.app.activeRevision, before);
        const rollout = st.rollouts[0]!;
        assert.equal(rollout.status, 'failed');
        assert.match(
          rollout.reason!,
          mode === 'crash'
            ? /instance roll-\d+-\w+ of revision \d+ (crashed \d+ times|failed to start)[\s\S]*crashing on purpose/
            : /rolling update to revision \d+ made no progress for 5s \(0 of 4 new instances available\)/,
        );
        assert.match(r.stdout + r.stderr, mode === 'crash' ? /crash/ : /made no progress/);
        await waitFor(
          'the failed revision to stop and the old one to serve with 4',
          async () =>
            (await live('roll', rollout.toRevision)).length === 0 &&
            (await live('roll', before)).filter((i) => i.state === 'ready').length === 4
              ? true
              : undefined,
          30_000,
        );
      });
    }

    it('blue-green with keepPrevious under the request loop: 0 failed, the previous set kept up for its time, then stopped', async () => {
      await commitRevision(repo, 'good', appYaml('roll', 4, 'type: blue-green\nkeepPrevious: 4s'));
      const before = (await status('roll')).app.activeRevision!;
      const loop = new RequestLoop(h.router, 'roll.localhost');
      const r = await h.cli(['run', repo]);
      ok(r);
      const to = (await status('roll')).app.activeRevision!;
      assert.ok(to > before);
      // Kept: still running, out of the table (every answer from the new revision).
      const kept = (await live('roll', before)).filter((i) => i.desired === 'run');
      assert.equal(kept.length, 4, 'the previous set stays up');
      await sleep(1000);
      const s = await loop.stop();
      report('blue-green', s);
      assert.equal(s.failed, 0, s.failures.join('\n'));
      const after = s.seen.filter((x) => x.start > s.seen[s.seen.length - 1]!.start - 800);
      assert.ok(
        after.every((x) => x.revision === to),
        'after the switch every request goes to the new revision',
      );
      // Stopped once keepPrevious (4 s) is over: well before the reconciler's 30 s resync.
      await waitFor(
        'the kept set to stop after keepPrevious',
        async () => ((await live('roll', before)).length === 0 ? true : undefined),
        20_000,
      );
    });
  });

  describe('bad strategy config', () => {
    const cases: [string, string, RegExp][] = [
      [
        'weights not reaching 100',
        'type: canary\nsteps: [{weight: 10}, {weight: 50}]',
        /strategy\.steps: the last step must have weight 100 \(got 50\)/,
      ],
      [
        'weights going backwards',
        'type: canary\nsteps: [{weight: 50}, {weight: 20}, {weight: 100}]',
        /strategy\.steps\[1\]\.weight: must be above the step before \(50\), got 20/,
      ],
      [
        'a weight of 0',
        'type: canary\nsteps: [{weight: 0}, {weight: 100}]',
        /strategy\.steps\/0\/weight|strategy\.steps\[0\]\.weight|steps.*weight/,
      ],
      ['an unknown strategy type', 'type: linear', /strategy\.type|strategy\/type/],
      [
        'a negative pause (duration)',
        'type: canary\nsteps: [{weight: 10, pause: -5s}, {weight: 100}]',
        /strategy\.steps\/0\/pause|strategy\.steps\[0\]\.pause|pause/,
      ],
      ['a negative pause (seconds)', 'type: canary\nsteps: [{weight: 10, pause: -5}, {weight: 100}]', /pause/],
      [
        'an error rate over 100%',
        'type: canary\nanalysis: {maxErrorRate: 150%}',
        /strategy\.analysis\.maxErrorRate: a share from 0% to 100%/,
      ],
      ['an analysis window of 0', 'type: canary\nanalysis: {window: 0s}', /strategy\.analysis\.window: from 1s to 5m/],
      ['a negative minRequests', 'type: canary\nanalysis: {minRequests: -1}', /minRequests/],
      [
        'maxSurge and maxUnavailable both 0',
        'type: rolling\nmaxSurge: 0\nmaxUnavailable: 0',
        /strategy\.maxSurge and strategy\.maxUnavailable: not both 0/,
      ],
      ['maxUnavailable over 100%', 'type: rolling\nmaxUnavailable: 150%', /strategy\.maxUnavailable: at most 100%/],
      [
        'a field of another strategy',
        'type: rolling\nsteps: [{weight: 100}]',
        /strategy\.steps: only for type canary \(this one is rolling\)/,
      ],
      ['shell text as a weight', 'type: canary\nsteps: [{weight: "10; rm -rf /"}, {weight: 100}]', /weight/],
    ];

    it('pilot run refuses each with invalid_config naming the field; nothing deployed', async () => {
      const repo = await makeStrategyRepo(h, 'bad', 1, undefined);
      ok(await h.cli(['run', repo]));
      const revisions = async (): Promise<number> => ((await h.apiCall('GET', '/api/v1/apps/bad')).json.revisions as unknown[]).length;
      const count = await revisions();
      for (const [what, yaml, field] of cases) {
        await commitRevision(repo, 'good', appYaml('bad', 1, yaml));
        const r = await h.cli(['run', repo, '--json']);
        assert.notEqual(r.code, 0, `${what}: ${r.stdout}`);
        assert.match(r.stderr, /"code":"invalid_config"/, `${what}: ${r.stderr}`);
        assert.match(r.stderr, field, `${what}: ${r.stderr}`);
      }
      // Without --json: the message (naming pilot.yaml and the field) on stderr.
      const plain = await h.cli(['run', repo]);
      assert.equal(plain.code, 1);
      assert.match(plain.stderr, /^error: .*pilot\.yaml: .*strategy\.steps.*weight/m);
      assert.equal(await revisions(), count, 'nothing deployed');
      assert.equal((await status('bad')).rollouts.length, 1);
    });
  });
});
