/**
 * A Swarm target whose manager goes away while Pilot runs: the target reports it, its node goes
 * down, a deploy to it fails clearly, and an app on Pilot's own agent keeps serving through the
 * router without one failed request. The manager is a stand-in Engine API on a unix socket (it
 * answers /info, /nodes, /services and /tasks as an empty one-node Swarm would), closed mid-test:
 * the real engine's Swarm cannot be stopped under other tests.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Harness, makeRepo, ROOT, sleep, tempDir, waitFor } from '../integration/harness.js';

const T = `smd${process.pid}`;

function fakeManager(path: string): Promise<Server> {
  const node = {
    ID: 'fakenode1',
    Description: { Hostname: 'fake-manager' },
    Status: { State: 'ready', Addr: '127.0.0.1' },
    Spec: { Role: 'manager', Availability: 'active' },
    ManagerStatus: { Leader: true, Addr: '127.0.0.1:2377' },
  };
  const s = createServer((req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname.replace(/^\/v[\d.]+/, '');
    res.setHeader('content-type', 'application/json');
    if (p === '/info') return res.end(JSON.stringify({ Swarm: { LocalNodeState: 'active', ControlAvailable: true } }));
    if (p === '/nodes') return res.end(JSON.stringify([node]));
    if (p === '/services' || p === '/tasks') return res.end('[]');
    res.statusCode = 404;
    res.end(JSON.stringify({ message: `not in this stand-in: ${p}` }));
  });
  return new Promise((resolve) => s.listen(path, () => resolve(s)));
}

describe('a Swarm manager that goes down', { timeout: 180_000 }, () => {
  const h = new Harness();
  let manager: Server | undefined;

  before(async () => {
    await h.startUp();
  });
  after(async () => {
    manager?.close();
    await h.cleanup();
  });

  it('is reported, refuses deploys clearly, and the agents’ apps keep serving', async () => {
    const dir = h.track(tempDir('swarm-down'));
    manager = await fakeManager(join(dir, 'docker.sock'));
    const add = await h.cli(['targets', 'add', T, '--docker', `unix://${dir}/docker.sock`]);
    assert.equal(add.code, 0, add.stderr);
    await waitFor('the target node ready and its first report in', async () => {
      const t = (await h.apiCall('GET', `/api/v1/targets/${T}`)).json;
      return (t.node?.status === 'ready' && t.status?.ok && t.status.nodes.length === 1) || undefined;
    });
    const nodes = await h.cli(['nodes']);
    assert.match(nodes.stdout, new RegExp(`${T}\\s+fake-manager\\s+127\\.0\\.0\\.1\\s+manager \\(leader\\)\\s+ready`));

    // An app on the local agent, under a request loop, while the manager goes away.
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    const run = await h.cli(['run', repo]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    let on = true;
    const stats = { ok: 0, failed: 0 };
    const loop = (async () => {
      while (on) {
        const r = await h.viaRouter('hello.localhost').catch(() => ({ status: 0 }));
        if (r.status === 200) stats.ok++;
        else stats.failed++;
        await sleep(20);
      }
    })();

    await new Promise((r) => manager!.close(r));
    manager = undefined;
    const down = await waitFor('the target reported down', async () => {
      const t = (await h.apiCall('GET', `/api/v1/targets/${T}`)).json;
      return t.status && !t.status.ok && t.node?.status === 'down' ? t : undefined;
    });
    assert.match(down.status.error, /Swarm: GET \/info failed: connect (ENOENT|ECONNREFUSED)/);
    const dry = await h.apiCall('POST', '/api/v1/apps/elsewhere/revisions?dryRun=true', { config: { runtime: 'docker', target: T } });
    assert.equal(dry.status, 503);
    assert.equal(dry.json.error.code, 'target_unavailable');
    assert.match(dry.json.error.message, new RegExp(`deploy target "${T}" cannot run a deploy now: Swarm: GET /info failed`));
    const list = await h.cli(['targets', 'list']);
    assert.match(list.stdout, new RegExp(`${T} .*swarm-${T} \\(down\\)\\s+not answering`));
    await sleep(2000);
    on = false;
    await loop;
    assert.equal(stats.failed, 0, `failed requests to the agent's app (${stats.ok} ok)`);
    assert.ok(stats.ok > 20);
    const hello = (await h.apiCall('GET', '/api/v1/apps/hello')).json.instances.filter((i: any) => i.state === 'ready');
    assert.ok(hello.length >= 1, 'the agent app kept its instances');
  });
});
