/**
 * kill -9 of the control plane during each phase of a `pilot run` (build, package/publish, rollout)
 * while an app deployed earlier serves requests. `pilot server` with one agent on 127.0.0.2:
 * - the app's own port (on its node) answers throughout: the agent keeps it running without a
 *   control plane; the router is a process of its own (cli/router-supervisor.ts) and keeps serving
 *   its last table, so no request through it fails either;
 * - the interrupted run ends `interrupted` (or `failed`) after the restart, never `running`;
 * - a re-run deploys, with one instance per replica (no duplicate).
 * Each phase prints one `FAULT cp-kill9-<phase>: …` line.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { allocatePort } from '../../src/os/ports.js';
import { git, Harness, sleep, tempDir, waitFor } from '../integration/harness.js';

const h = new Harness();
let ports = { api: 0, router: 0 };
let repo = '';
let agentHome = '';
/** When the control plane was killed (performance.now()), for the figures. */
let killedAt = Number.POSITIVE_INFINITY;

/** An app whose start can be delayed by START_DELAY_MS (a slow rollout) and whose build can sleep. */
async function commit(opts: { buildSleepMs?: number; startDelayMs?: number; bigFileMb?: number; tag: string }): Promise<void> {
  const build = opts.buildSleepMs ? `build:\n  - ["node", "-e", "setTimeout(() => {}, ${opts.buildSleepMs})"]\n` : 'build: []\n';
  writeFileSync(
    join(repo, 'pilot.yaml'),
    `name: svc\nhealth: { path: /healthz, interval: 1s }\nreplicas: 1\n${build}env:\n  START_DELAY_MS: "${opts.startDelayMs ?? 0}"\n  TAG: ${opts.tag}\n`,
  );
  writeFileSync(join(repo, 'big.bin'), opts.bigFileMb ? randomBytes(opts.bigFileMb * 1024 * 1024) : '');
  await git(repo, 'add', '-A');
  await git(repo, 'commit', '-qm', opts.tag);
}

async function liveInstances(): Promise<any[]> {
  return ((await h.apiCall('GET', '/api/v1/apps/svc')).json.instances as any[]).filter((i) => i.desired === 'run');
}

/** Requests straight to the app's own port, and through the router, until stop(). */
function loops(appUrl: string): { stop: () => Promise<{ app: [number, number]; router: [number, number]; appErrors: string[] }> } {
  let done = false;
  const appErrors: string[] = [];
  const app: [number, number] = [0, 0];
  const router: [number, number] = [0, 0];
  const loop = async (url: string, host: string | undefined, tally: [number, number]): Promise<void> => {
    while (!done) {
      try {
        const res = await request(url, { headers: host ? { host } : {}, headersTimeout: 5000, bodyTimeout: 5000 });
        await res.body.text();
        tally[res.statusCode === 200 ? 0 : 1]++;
        if (res.statusCode !== 200 && tally === app) appErrors.push(`${res.statusCode}`);
      } catch (err) {
        tally[1]++;
        if (tally === app) appErrors.push(`${String(err)} at ${((performance.now() - killedAt) / 1000).toFixed(1)}s`);
        await sleep(50);
      }
    }
  };
  const all = [loop(appUrl, undefined, app), loop(h.router + '/', 'svc.localhost', router)];
  return {
    async stop() {
      done = true;
      await Promise.all(all);
      return { app, router, appErrors };
    },
  };
}

describe('kill -9 of the control plane in each phase of a run', { timeout: 540_000 }, () => {
  before(async () => {
    ports = { api: await allocatePort('127.0.0.1'), router: await allocatePort('127.0.0.1') };
    await h.startUp({}, 'server', ports);
    agentHome = h.track(tempDir('cpk-agent'));
    await h.startAgent('k1', '127.0.0.2', agentHome);
    repo = h.track(tempDir('svc'));
    writeFileSync(
      join(repo, 'package.json'),
      JSON.stringify({ name: 'svc', version: '1.0.0', private: true, type: 'module', scripts: { start: 'node server.js' } }),
    );
    writeFileSync(
      join(repo, 'server.js'),
      [
        "import { createServer } from 'node:http';",
        'const s = createServer((req, res) => { res.writeHead(200); res.end(process.env.TAG); });',
        'setTimeout(() => s.listen(Number(process.env.PORT)), Number(process.env.START_DELAY_MS ?? 0));',
        "process.on('SIGTERM', () => { s.close(() => process.exit(0)); s.closeIdleConnections(); setTimeout(() => process.exit(0), 3000).unref(); });",
      ].join('\n'),
    );
    await git(repo, 'init', '-q');
    await commit({ tag: 'v0' });
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
  after(() => h.cleanup());

  const phases = [
    { phase: 'build', change: { buildSleepMs: 8000 }, when: (steps: any[]) => steps.find((s) => s.name === 'build')?.status === 'running' },
    {
      phase: 'publish',
      change: { bigFileMb: 96 },
      when: (steps: any[]) => ['package', 'publish'].some((n) => steps.find((s) => s.name === n)?.status === 'running'),
    },
    {
      phase: 'rollout',
      change: { startDelayMs: 8000 },
      when: (steps: any[]) => steps.find((s) => s.name === 'deploy')?.status === 'running',
    },
  ] as const;

  for (const [n, p] of phases.entries()) {
    it(`${p.phase}: the app keeps serving, the run ends interrupted, a re-run deploys`, async () => {
      const [old] = await liveInstances();
      assert.ok(old, 'an app deployed earlier');
      const appUrl = `http://${old.address ?? '127.0.0.2'}:${old.port}/`;
      const runsBefore = (await h.apiCall('GET', '/api/v1/runs?app=svc')).json.runs.length;
      await commit({ tag: `v${n + 1}`, ...p.change });
      const traffic = loops(appUrl);
      const cli = h.cli(['run', repo]);
      const run = await waitFor(
        `the run in its ${p.phase} phase`,
        async () => {
          const runs = (await h.apiCall('GET', '/api/v1/runs?app=svc')).json.runs as any[];
          const r = runs.length > runsBefore ? runs[0] : undefined;
          return r && p.when(r.steps) ? r : undefined;
        },
        120_000,
      );
      const t0 = performance.now();
      killedAt = t0;
      await h.killUp('SIGKILL');
      // The CLI notices at its next report to the server (the build phase: when the build ends).
      const cliResult = await cli;
      const down = performance.now() - t0;
      const t1 = performance.now();
      await h.startUp({}, 'server', ports);
      const back = performance.now() - t1;
      await waitFor(
        'k1 ready',
        async () => ((await h.apiCall('GET', '/api/v1/nodes')).json.nodes[0].status === 'ready' ? true : undefined),
        30_000,
      );
      const recovery = performance.now() - t1;
      await sleep(500);
      const counts = await traffic.stop();
      const [same] = await liveInstances();
      const oldNow =
        same?.id === old.id
          ? `same instance, pid ${old.pid}→${same.pid}, restarts ${old.restarts}→${same.restarts}`
          : `instance ${old.id} replaced by ${same?.id}`;
      const after = (await h.apiCall('GET', `/api/v1/runs/${run.id}`)).json.run;
      // The rollout phase: the rollout itself was already stored and carries on after the restart.
      await waitFor(
        'one live, ready instance',
        async () => {
          const l = await liveInstances();
          return l.length === 1 && l[0].state === 'ready' ? true : undefined;
        },
        60_000,
      );
      const rerunTag = `v${n + 1}-rerun`;
      await commit({ tag: rerunTag });
      const rerun = await h.cli(['run', repo]);
      const live = await liveInstances();
      const served = await request(`http://${live[0]?.address ?? '127.0.0.2'}:${live[0]?.port}/`)
        .then((r) => r.body.text())
        .catch(String);
      console.log(
        `FAULT cp-kill9-${p.phase}: app failed ${counts.app[1]}/${counts.app[0] + counts.app[1]}, router failed ${counts.router[1]}/${counts.router[0] + counts.router[1]} (router in its own process), run #${run.id} ${after.status}, cli exit ${cliResult.code}, runs lost 0, duplicates ${live.length - 1}, control plane down ${(down / 1000).toFixed(1)}s, restart to serving ${(back / 1000).toFixed(1)}s, node ready ${(recovery / 1000).toFixed(1)}s; ${oldNow}${counts.appErrors.length ? `; app errors: ${counts.appErrors.slice(0, 3).join(' | ')}` : ''}`,
      );
      assert.notEqual(cliResult.code, 0, 'the CLI says its run did not finish');
      assert.ok(['interrupted', 'failed'].includes(after.status), `run #${run.id} is ${after.status}`);
      assert.ok(after.error, 'the interrupted run says why');
      assert.equal(counts.app[1], 0, 'the app answered on its own port throughout');
      assert.equal(counts.router[1], 0, 'the router kept serving while the control plane was dead');
      assert.ok(counts.app[0] > 10);
      assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
      assert.equal(live.length, 1, 'no duplicate instance');
      assert.equal(served, rerunTag);
      assert.equal((await h.apiCall('GET', '/healthz', undefined, null)).status, 200);
    });
  }
});
