/**
 * kill -9 of `pilot up` (control plane + local agent) while traffic flows: the router runs in its
 * own process and keeps serving its last table, so no request fails; a run in flight ends
 * `interrupted`; a restart in the middle of a rollout replaces nothing that was re-adopted; a WAL
 * file removed after the kill loses at most the writes not yet checkpointed, and the instances
 * those writes made are kept running as orphans rather than stopped.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { signGithubPayload } from '../../src/cd/github-signature.js';
import { spawn } from 'node:child_process';
import { git, Harness, makeRepo, PILOT, ROOT, sleep, tempDir, waitFor } from '../integration/harness.js';

const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as { name: string; examples: Record<string, unknown>[] }[];
const pushExample = examples.find((e) => e.name === 'push')!.examples[0]!;
const ENV = { PILOT_CD_QUIET_MS: '200' };

const h = new Harness();
let deployed: { artifact: string; commit: string; node: unknown } = { artifact: '', commit: '', node: null };

/** A client that sends one request after another through the router, and counts what failed. */
function steadyLoop(host = 'hello.localhost'): { stop: () => Promise<{ ok: number; failed: string[] }> } {
  let running = true;
  let ok = 0;
  const failed: string[] = [];
  // A fresh connection now and then, as real clients do (a kept-alive one alone would hide refusals).
  const dispatcher = new Agent({ keepAliveTimeout: 200, connections: 4 });
  const done = (async () => {
    while (running) {
      try {
        const res = await request(h.router + '/', { headers: { host }, dispatcher, headersTimeout: 10_000, bodyTimeout: 10_000 });
        const text = await res.body.text();
        if (res.statusCode === 200) ok++;
        else failed.push(`${res.statusCode} ${text.slice(0, 120)}`);
      } catch (err) {
        failed.push((err as Error).message);
      }
      await sleep(15);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      await dispatcher.close();
      return { ok, failed };
    },
  };
}

async function servedPid(): Promise<number> {
  const r = await h.viaRouter('hello.localhost');
  assert.equal(r.status, 200, r.text);
  return (JSON.parse(r.text) as { pid: number }).pid;
}

/** Pids of hello's instances, from the local agent's pid files. */
function helloPids(): number[] {
  const dir = join(h.home, 'agent', 'instances');
  return readdirSync(dir)
    .filter((id) => id.startsWith('hello-'))
    .flatMap((id) => {
      try {
        return [(JSON.parse(readFileSync(join(dir, id, 'pid.json'), 'utf8')) as { pid: number }).pid];
      } catch {
        return [];
      }
    });
}

async function instances(): Promise<any[]> {
  return (await h.apiCall('GET', '/api/v1/apps/hello')).json.instances as any[];
}

describe('fault: kill -9 of the control plane', { timeout: 900_000 }, () => {
  before(async () => {
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    // START_DELAY_MS makes a revision slow to get ready: a rollout the kill can land in.
    const server = join(repo, 'server.js');
    writeFileSync(
      server,
      readFileSync(server, 'utf8')
        .replace('server.listen(port,', 'setTimeout(() => server.listen(port,')
        .replace(/listening on \$\{port\}`\)\);/, 'listening on ${port}`)), Number(process.env.START_DELAY_MS ?? 0));'),
    );
    await git(repo, 'commit', '-qam', 'optional start delay');
    await h.startUp(ENV);
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const status = (await h.apiCall('GET', '/api/v1/apps/hello')).json;
    deployed = { artifact: status.revisions[0].artifact, commit: status.revisions[0].commit, node: status.revisions[0].node };
  });
  after(() => h.cleanup());

  it('fails 0 requests across kill -9 and restart of pilot up, and the run in flight ends interrupted', async () => {
    const run = (await h.apiCall('POST', '/api/v1/runs', { app: 'hello', commit: deployed.commit, dirty: false })).json.run;
    assert.equal(run.status, 'running');
    const pid = await servedPid();
    const loop = steadyLoop();
    await sleep(1000);
    await h.killUp('SIGKILL');
    await sleep(2000); // traffic with no control plane at all
    await h.startUp(ENV);
    await sleep(2000);
    const { ok, failed } = await loop.stop();
    assert.deepEqual(failed, [], `${failed.length} failed of ${ok + failed.length}`);
    assert.ok(ok > 50, `only ${ok} requests went through`);
    assert.equal(await servedPid(), pid, 'the same instance serves');
    const after = (await h.apiCall('GET', `/api/v1/runs/${run.id}`)).json.run;
    assert.equal(after.status, 'interrupted');
    assert.match(after.error, /restarted/);
    process.stdout.write(`# kill -9 of pilot up under load: ${ok} requests, ${failed.length} failed\n`);
  });

  it('a router that dies is restarted by pilot up; one started with no control plane serves its saved table', async () => {
    const port = Number(new URL(h.router).port);
    const first = h.routerPid();
    assert.ok(first);
    process.kill(first, 'SIGKILL');
    const second = await waitFor(
      'a new router process',
      () => {
        const p = h.routerPid();
        return p !== undefined && p !== first ? p : undefined;
      },
      30_000,
    );
    await waitFor(
      'the router to serve again',
      async () => ((await h.viaRouter('hello.localhost')).status === 200 ? true : undefined),
      30_000,
    );
    // No control plane at all, no router: a router started from scratch serves the saved table at once.
    await h.killUp('SIGKILL');
    process.kill(second, 'SIGKILL');
    await sleep(300);
    const lone = spawn(process.execPath, [PILOT, 'router', '--host', '127.0.0.1', '--port', String(port)], {
      env: h.env(),
      stdio: 'ignore',
    });
    try {
      await waitFor('the lone router to listen', () => (h.routerPid() === lone.pid ? true : undefined), 30_000);
      const r = await h.viaRouter('hello.localhost');
      assert.equal(r.status, 200, r.text);
    } finally {
      // The next `pilot up` adopts it; should this test fail, it must not outlive the test.
      if (h.routerPid() !== lone.pid) lone.kill('SIGKILL');
    }
    await h.startUp(ENV);
    assert.equal(h.routerPid(), lone.pid, 'pilot up adopted the running router');
  });

  it('a restart during a rollout replaces nothing it re-adopted, and the rollout ends', async () => {
    const oldPid = await servedPid();
    const loop = steadyLoop();
    const d = await h.apiCall('POST', '/api/v1/apps/hello/revisions', {
      artifact: deployed.artifact,
      commit: deployed.commit,
      ...(deployed.node ? { node: deployed.node } : {}),
      config: {
        name: 'hello',
        health: { path: '/healthz', interval: '1s' },
        env: { START_DELAY_MS: '6000', GREETING: 'slow revision' },
        deploy: { ready_timeout: '120s' },
      },
    });
    assert.equal(d.status, 201, JSON.stringify(d.json));
    const target = d.json.revision.number as number;
    const started = await waitFor(
      'the new instance to be started',
      async () => {
        const i = (await instances()).find((x) => x.revision === target && x.pid);
        return i ? { id: i.id as string, pid: i.pid as number } : undefined;
      },
      60_000,
    );
    await h.killUp('SIGKILL');
    await sleep(500);
    await h.startUp(ENV);
    // Re-adopted, not replaced: the same instance ids and processes, and the old one serves until the switch.
    const right = await instances();
    assert.ok(
      right.some((i) => i.id === started.id),
      `the new instance ${started.id} is still there: ${JSON.stringify(right.map((i) => i.id))}`,
    );
    const rollout = await waitFor(
      'the rollout to end',
      async () => {
        const r = (await h.apiCall('GET', `/api/v1/apps/hello/rollouts/${d.json.rollout.id}`)).json.rollout;
        return r.status === 'running' ? undefined : r;
      },
      120_000,
    );
    assert.equal(rollout.status, 'succeeded', JSON.stringify(rollout));
    await waitFor(
      'the new revision to serve',
      async () => (JSON.parse((await h.viaRouter('hello.localhost')).text).message === 'slow revision' ? true : undefined),
      30_000,
    );
    const now = await instances();
    const mine = now.find((i) => i.id === started.id);
    assert.equal(mine?.pid, started.pid, 'the instance started before the kill is the one serving');
    assert.equal(now.filter((i) => i.revision === target).length, 1, 'no second copy was placed');
    const { ok, failed } = await loop.stop();
    assert.deepEqual(failed, [], `${failed.length} failed of ${ok + failed.length}`);
    assert.notEqual(await servedPid(), oldPid);
    process.stdout.write(`# restart mid-rollout: ${ok} requests, ${failed.length} failed\n`);
  });

  it('a webhook run killed mid-rollout is retried and never deploys its commit twice', async () => {
    const origin = h.track(tempDir('origin'));
    await git(origin, 'init', '-q', '--bare');
    const work = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    const server = join(work, 'server.js');
    writeFileSync(
      server,
      readFileSync(server, 'utf8')
        .replace('server.listen(port,', 'setTimeout(() => server.listen(port,')
        .replace(/listening on \$\{port\}`\)\);/, 'listening on ${port}`)), Number(process.env.START_DELAY_MS ?? 0));'),
    );
    writeFileSync(
      join(work, 'pilot.yaml'),
      'name: hook\nhealth: { path: /healthz, interval: 1s }\nenv: { START_DELAY_MS: "5000" }\ndeploy: { ready_timeout: 120s }\n',
    );
    await git(work, 'commit', '-qam', 'hook app, slow to start');
    await git(work, 'remote', 'add', 'origin', origin);
    await git(work, 'push', '-q', 'origin', 'HEAD:main');
    const sha = await git(work, 'rev-parse', 'HEAD');
    const secret = 'fault-test-webhook-secret-0123';
    assert.equal((await h.apiCall('POST', '/api/v1/apps', { name: 'hook', repo: origin, branch: 'main', secret })).status, 201);
    const p = structuredClone(pushExample) as Record<string, any>;
    Object.assign(p, {
      ref: 'refs/heads/main',
      after: sha,
      deleted: false,
      repository: { ...p.repository, clone_url: origin, full_name: 'acme/hook' },
    });
    p.head_commit = { ...(p.head_commit ?? {}), id: sha, message: 'x', author: { name: 'Dev', email: 'dev@example.com' } };
    const body = JSON.stringify(p);
    const res = await request(`${h.api}/hooks/github/hook`, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-github-delivery': randomUUID(),
        'x-hub-signature-256': signGithubPayload(secret, body),
      },
    });
    assert.equal(res.statusCode, 202, await res.body.text());
    // Kill the control plane once the run has made its revision and its rollout is under way.
    const first = await waitFor(
      'the run to reach its rollout',
      async () => {
        const r = ((await h.apiCall('GET', '/api/v1/runs?app=hook')).json.runs as any[])[0];
        return r?.revision && r.status === 'running' ? r : undefined;
      },
      240_000,
    );
    await h.killUp('SIGKILL');
    await h.startUp(ENV);
    const retry = await waitFor(
      'the retried run to end',
      async () => {
        const runs = (await h.apiCall('GET', '/api/v1/runs?app=hook')).json.runs as any[];
        const r = runs.find((x) => x.retryOf === first.id);
        return r && !['queued', 'running'].includes(r.status) ? r : undefined;
      },
      240_000,
    );
    const interrupted = (await h.apiCall('GET', `/api/v1/runs/${first.id}`)).json.run;
    assert.equal(interrupted.status, 'interrupted');
    assert.equal(retry.status, 'succeeded', JSON.stringify(retry));
    assert.equal(retry.revision, first.revision, 'the retry followed the revision the first attempt made');
    const revisions = (await h.apiCall('GET', '/api/v1/apps/hook')).json.revisions as any[];
    assert.deepEqual(
      revisions.filter((r) => r.commit === sha).map((r) => r.number),
      [first.revision],
      'the commit was deployed once',
    );
    assert.equal((await h.viaRouter('hook.localhost')).status, 200);
    assert.equal((await h.cli(['apps', 'rm', 'hook', '--yes'])).code, 0);
  });

  it('a WAL removed after kill -9: the server starts, checkpointed state is there, nothing running is stopped', async () => {
    const pid = await servedPid();
    await sleep(6000); // past a checkpoint (every 5 s)
    const scale = await h.apiCall('POST', '/api/v1/apps/hello/scale', { replicas: 2 });
    assert.equal(scale.status, 200);
    // Let the second instance start (its row may or may not be checkpointed yet), then kill.
    await waitFor('a second process', () => (helloPids().length >= 2 ? true : undefined), 60_000);
    await h.killUp('SIGKILL');
    // hello's processes as the kill left them (nothing can stop them now: agent and control plane are dead).
    const pids = helloPids();
    assert.ok(pids.length >= 2);
    rmSync(join(h.home, 'pilot.db-wal'), { force: true });
    rmSync(join(h.home, 'pilot.db-shm'), { force: true });
    const loop = steadyLoop();
    await h.startUp(ENV);
    const app = (await h.apiCall('GET', '/api/v1/apps/hello')).json;
    assert.ok(app.revisions.length >= 2, 'the checkpointed revisions are there');
    assert.equal(await servedPid(), pid, 'the serving instance is known and keeps serving');
    // Whatever the lost writes made is still running: known again or reported as an orphan, never stopped.
    await waitFor(
      'every running instance known or orphan',
      async () => {
        const known = new Set((await instances()).map((i) => i.pid));
        const orphans = new Set(((await h.apiCall('GET', '/api/v1/orphans')).json.orphans as any[]).map((o) => o.pid));
        return pids.every((p) => known.has(p) || orphans.has(p)) ? true : undefined;
      },
      30_000,
    );
    for (const p of pids) assert.doesNotThrow(() => process.kill(p, 0), `instance ${p} still runs`);
    const { failed } = await loop.stop();
    assert.deepEqual(failed, []);
  });
});

describe('fault: control-plane restart while a node has not reported yet', { timeout: 600_000 }, () => {
  const h2 = new Harness();
  after(() => h2.cleanup());

  it('gives the node a grace period: its starting instance is not replaced before the agent reports', async () => {
    const repo = h2.track(await makeRepo(join(ROOT, 'examples/hello')));
    const server = join(repo, 'server.js');
    writeFileSync(
      server,
      readFileSync(server, 'utf8')
        .replace('server.listen(port,', 'setTimeout(() => server.listen(port,')
        .replace(/listening on \$\{port\}`\)\);/, 'listening on ${port}`)), Number(process.env.START_DELAY_MS ?? 0));'),
    );
    writeFileSync(
      join(repo, 'pilot.yaml'),
      'name: slow\nhealth: { path: /healthz, interval: 1s }\nenv: { START_DELAY_MS: "8000" }\ndeploy: { ready_timeout: 120s }\n',
    );
    await git(repo, 'commit', '-qam', 'slow app');
    await h2.startUp(ENV, 'server');
    const apiPort = Number(new URL(h2.api).port); // the agent knows the control plane by this address
    const agent = await h2.startAgent('n1', '127.0.0.2', h2.track(tempDir('agent')));
    const run = h2.cli(['run', repo]); // its outcome does not matter: the server dies under it
    const placed = await waitFor(
      'the instance to be started',
      async () => {
        const i = ((await h2.apiCall('GET', '/api/v1/apps/slow')).json?.instances as any[] | undefined)?.find((x) => x.pid);
        return i ? { id: i.id as string, pid: i.pid as number } : undefined;
      },
      240_000,
    );
    // The agent is frozen (not reporting, its instance still starting: nothing answers), and the
    // control plane restarts. Past the down threshold (1.5 s) but within the start-up grace.
    agent.kill('SIGSTOP');
    try {
      await h2.killUp('SIGKILL');
      await h2.startUp(ENV, 'server', { api: apiPort, router: 0 });
      await sleep(4000);
      const nodes = (await h2.apiCall('GET', '/api/v1/nodes')).json.nodes as any[];
      assert.equal(nodes[0].status, 'suspect', 'not down while it may simply not have reported yet');
    } finally {
      agent.kill('SIGCONT');
    }
    const ready = await waitFor(
      'the instance to be ready',
      async () => {
        const list = (await h2.apiCall('GET', '/api/v1/apps/slow')).json.instances as any[];
        return list.some((i) => i.state === 'ready') ? list : undefined;
      },
      120_000,
    );
    assert.deepEqual(
      ready.map((i) => i.id),
      [placed.id],
      'the instance placed before the restart is the one running; nothing replaced it',
    );
    assert.equal(ready[0].pid, placed.pid);
    await run;
  });
});
