/**
 * A router on every node: `pilot server` and two `pilot agent --router-port` nodes (127.0.0.2 and
 * 127.0.0.3), two apps of two replicas (one instance per node). Steady request loops go to both
 * node routers, for both apps, while:
 *   - an app is redeployed: the old instances are drained across both routers (slow POSTs in flight
 *     on each router; the app exits at once on SIGTERM, so a drain that did not wait for one of the
 *     routers fails a request), 0 failed requests;
 *   - the control plane is killed (kill -9): both routers keep serving every app, 0 failed requests;
 *   - a node (agent and its router) is restarted while the control plane is still down: its router
 *     serves every app from its saved table.
 * The traffic figures of /api/v1/apps/:app/traffic include what the node routers served.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { allocatePort } from '../../src/os/ports.js';
import { git, Harness, makeRepo, ROOT, sleep, tempDir, waitFor } from './harness.js';

const h = new Harness();
const nodes = [
  { name: 'n1', address: '127.0.0.2', home: '', port: 0, proc: undefined as ChildProcess | undefined },
  { name: 'n2', address: '127.0.0.3', home: '', port: 0, proc: undefined as ChildProcess | undefined },
];

// The app that makes a drain observable: POST /slow answers after 4 s (longer than the
// app's 1 s drainMs), and SIGTERM ends the
// process at once (no graceful close): a request still in flight when it is stopped fails.
const EDGE_SERVER = `import { createServer } from 'node:http';
const revision = process.env.PILOT_REVISION ?? 'dev';
const server = createServer((req, res) => {
  if (req.url === '/healthz') return res.end('ok');
  if (req.method === 'POST' && req.url === '/slow') {
    req.resume();
    req.on('end', () => setTimeout(() => res.end('slow ' + revision), 4000));
    return;
  }
  res.end(JSON.stringify({ app: 'edge', revision }));
});
server.listen(Number(process.env.PORT));
process.on('SIGTERM', () => process.exit(0));
`;

async function kill(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGKILL');
  await exited;
}

function startNode(n: (typeof nodes)[number], until = 'joined'): Promise<ChildProcess> {
  return h.startAgent(n.name, n.address, n.home, {}, { args: ['--router-port', String(n.port)], until });
}

/** Steady loops: to each node's router, GET on both apps and a slow POST on edge. Stopped by `stop()`. */
function loops(): { stop: () => Promise<void>; ok: () => number; failures: string[] } {
  let stopped = false;
  let ok = 0;
  const failures: string[] = [];
  const one = async (router: string, host: string, method: 'GET' | 'POST', path: string): Promise<void> => {
    while (!stopped) {
      try {
        const res = await request(`http://${router}${path}`, {
          method,
          headers: { host },
          ...(method === 'POST' ? { body: 'x' } : {}),
          headersTimeout: 20_000,
        });
        const text = await res.body.text();
        if (res.statusCode === 200) ok++;
        else failures.push(`${router} ${host} ${method} ${path}: ${res.statusCode} ${text.slice(0, 120)}`);
      } catch (err) {
        failures.push(`${router} ${host} ${method} ${path}: ${String(err)}`);
      }
    }
  };
  const running = nodes.flatMap((n) => {
    const r = `${n.address}:${n.port}`;
    // Three slow POSTs at a time per router: both edge instances have one in flight on each router at any moment, most likely.
    const slow = [1, 2, 3].map(() => one(r, 'edge.localhost', 'POST', '/slow'));
    return [one(r, 'hello.localhost', 'GET', '/'), one(r, 'edge.localhost', 'GET', '/'), ...slow];
  });
  return {
    stop: async () => {
      stopped = true;
      await Promise.all(running);
    },
    ok: () => ok,
    failures,
  };
}

async function get(router: string, host: string): Promise<{ status: number; text: string }> {
  const res = await request(`http://${router}/`, { headers: { host } });
  return { status: res.statusCode, text: await res.body.text() };
}

describe('a router on every node', { timeout: 420_000 }, () => {
  let edgeRepo = '';
  before(async () => {
    const ports = { api: await allocatePort('127.0.0.1'), router: await allocatePort('127.0.0.1') };
    await h.startUp({}, 'server', ports);
    for (const n of nodes) {
      n.home = h.track(tempDir(n.name));
      n.port = await allocatePort(n.address);
      n.proc = await startNode(n);
    }
  });
  after(() => h.cleanup());

  it('deploys two apps of two replicas, one instance per node, and each node router answers for both', async () => {
    const hello = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(join(hello, 'pilot.yaml'), readFileSync(join(hello, 'pilot.yaml'), 'utf8').replace('replicas: 1', 'replicas: 2'));
    await git(hello, 'commit', '-qam', 'two replicas');
    const edge = h.track(tempDir('edge'));
    mkdirSync(edge, { recursive: true });
    writeFileSync(
      join(edge, 'package.json'),
      JSON.stringify({ name: 'edge', version: '1.0.0', private: true, type: 'module', scripts: { start: 'node server.js' } }),
    );
    const lock = {
      name: 'edge',
      version: '1.0.0',
      lockfileVersion: 3,
      requires: true,
      packages: { '': { name: 'edge', version: '1.0.0' } },
    };
    writeFileSync(join(edge, 'package-lock.json'), JSON.stringify(lock));
    writeFileSync(join(edge, 'server.js'), EDGE_SERVER);
    writeFileSync(join(edge, 'pilot.yaml'), 'name: edge\nhealth:\n  path: /healthz\n  interval: 1s\nreplicas: 2\n');
    edgeRepo = await makeRepo(edge);
    h.track(edgeRepo);
    for (const repo of [hello, edgeRepo]) {
      const r = await h.cli(['run', repo]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
    }
    for (const app of ['hello', 'edge']) {
      const list = (await h.apiCall('GET', `/api/v1/apps/${app}`)).json.instances as any[];
      assert.deepEqual(list.map((i) => i.node).sort(), ['n1', 'n2'], app);
    }
    for (const n of nodes) {
      for (const host of ['hello.localhost', 'edge.localhost']) {
        await waitFor(`${n.name}'s router to serve ${host}`, async () =>
          (await get(`${n.address}:${n.port}`, host)).status === 200 ? true : undefined,
        );
      }
      const unknown = await get(`${n.address}:${n.port}`, 'nobody.localhost');
      assert.equal(unknown.status, 404);
      // The saved table is private to the agent's user.
      const mode = statSync(join(n.home, 'agent', 'router', 'table.json')).mode & 0o777;
      assert.equal(mode, 0o600);
      assert.equal(statSync(join(n.home, 'agent', 'router')).mode & 0o777, 0o700);
    }
  });

  it('drains a redeployed app across both routers with no failed request, and counts their traffic', async () => {
    const l = loops();
    await sleep(2000);
    writeFileSync(join(edgeRepo, 'server.js'), EDGE_SERVER.replace("app: 'edge'", "app: 'edge', v: 2"));
    await git(edgeRepo, 'commit', '-qam', 'second revision');
    const r = await h.cli(['run', edgeRepo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // Until every old instance is gone (stopped after its drain).
    await waitFor(
      'old edge instances to stop',
      async () => {
        const list = (await h.apiCall('GET', '/api/v1/apps/edge')).json.instances as any[];
        return list.length === 2 && list.every((i) => i.revision === 2 && i.state === 'ready') ? true : undefined;
      },
      60_000,
    );
    await sleep(2000);
    await l.stop();
    assert.deepEqual(l.failures, []);
    assert.ok(l.ok() > 20, `only ${l.ok()} requests`);
    for (const n of nodes) {
      const body = (await get(`${n.address}:${n.port}`, 'edge.localhost')).text;
      assert.match(body, /"v":2/, `${n.name} serves the new revision`);
    }
    // Every request went through a node router; the figures count them (merged across routers).
    const t = (await h.apiCall('GET', '/api/v1/apps/hello/traffic?window=5m')).json;
    const served = (t.revisions as any[]).reduce((s, x) => s + x.requests, 0);
    assert.ok(served > 0, JSON.stringify(t));
    const fromN1 = await request(`http://${nodes[0]!.address}:${nodes[0]!.port}/`, { headers: { host: 'hello.localhost' } });
    await fromN1.body.text();
    const t2 = (await h.apiCall('GET', '/api/v1/apps/hello/traffic?window=5m')).json;
    assert.equal(
      (t2.revisions as any[]).reduce((s, x) => s + x.requests, 0),
      served + 1,
    );
  });

  it('keeps serving every app on both nodes with the control plane killed (kill -9)', async () => {
    const l = loops();
    await sleep(1500);
    await h.killUp('SIGKILL');
    const before = l.ok();
    await sleep(6000);
    await l.stop();
    assert.deepEqual(l.failures, []);
    assert.ok(l.ok() - before > 20, `only ${l.ok() - before} requests after the kill`);
  });

  it('serves from its saved table after a restart of its node while the control plane is down', async () => {
    const n1 = nodes[0]!;
    await kill(n1.proc);
    n1.proc = await startNode(n1, 'router listening on');
    for (const host of ['hello.localhost', 'edge.localhost']) {
      for (let i = 0; i < 10; i++) {
        const r = await get(`${n1.address}:${n1.port}`, host);
        assert.equal(r.status, 200, `${host}: ${r.text}`);
      }
    }
  });
});
