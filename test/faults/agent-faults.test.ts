/**
 * Agents on a bad day: `pilot server` with two agents on 127.0.0.2 and 127.0.0.3 and an app of two
 * replicas, one per node, under a request loop through the router.
 * - kill -9 of one agent ten times in a row, restarted each time: its instance is re-adopted (same
 *   id, pid and restart count), never started twice, and no request fails.
 * - SIGSTOP of an agent for 10 s: its app still answers, so the node is only `suspect` and nothing
 *   moves; after SIGCONT the node is ready with the same instances.
 * - SIGSTOP of an agent and its app for 10 s: the node goes `down`, the replica is replaced on the
 *   other node; after SIGCONT the stale instance is stopped and no duplicate is left.
 * Each case prints one `FAULT …` line with the figures.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { git, Harness, makeRepo, ROOT, sleep, tempDir, waitFor } from '../integration/harness.js';

const h = new Harness();
const nodes = [
  { name: 'f1', address: '127.0.0.2', home: '', proc: undefined as ChildProcess | undefined },
  { name: 'f2', address: '127.0.0.3', home: '', proc: undefined as ChildProcess | undefined },
];
const stopped = new Set<number>();
const loopsRunning = new Set<() => Promise<unknown>>();

async function instances(): Promise<any[]> {
  return (await h.apiCall('GET', '/api/v1/apps/hello')).json.instances;
}
async function live(): Promise<any[]> {
  return (await instances()).filter((i) => i.desired === 'run');
}
async function nodeStatus(name: string): Promise<string> {
  return (await h.apiCall('GET', '/api/v1/nodes')).json.nodes.find((n: any) => n.name === name).status;
}
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
async function kill9(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGKILL');
  await exited;
}
function signal(pid: number, sig: 'SIGSTOP' | 'SIGCONT'): void {
  process.kill(pid, sig);
  if (sig === 'SIGSTOP') stopped.add(pid);
  else stopped.delete(pid);
}

/** Requests through the router (2 loops) until stop(); a request that hangs 5 s counts as failed. */
function requestLoop(): { stop: () => Promise<{ ok: number; failed: string[] }> } {
  let done = false;
  let ok = 0;
  const failed: string[] = [];
  const loop = async (): Promise<void> => {
    while (!done) {
      try {
        const res = await request(h.router + '/', { headers: { host: 'hello.localhost' }, headersTimeout: 5000, bodyTimeout: 5000 });
        const text = await res.body.text();
        if (res.statusCode === 200) ok++;
        else failed.push(`${res.statusCode} ${text.slice(0, 100)}`);
      } catch (err) {
        failed.push(String(err));
      }
    }
  };
  const loops = [loop(), loop()];
  const stop = async (): Promise<{ ok: number; failed: string[] }> => {
    done = true;
    loopsRunning.delete(stop);
    await Promise.all(loops);
    return { ok, failed };
  };
  loopsRunning.add(stop);
  return { stop };
}

describe('agent faults: kill -9 x10, SIGSTOP of an agent, SIGSTOP of an agent and its app', { timeout: 420_000 }, () => {
  before(async () => {
    await h.startUp({}, 'server');
    for (const n of nodes) {
      n.home = h.track(tempDir(n.name));
      n.proc = await h.startAgent(n.name, n.address, n.home);
    }
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(join(repo, 'pilot.yaml'), readFileSync(join(repo, 'pilot.yaml'), 'utf8').replace('replicas: 1', 'replicas: 2'));
    await git(repo, 'commit', '-qam', 'two replicas');
    const ok = await h.cli(['run', repo]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.deepEqual((await live()).map((i) => i.node).sort(), ['f1', 'f2']);
  });
  after(async () => {
    // A failed case leaves its request loop going: stop it, or this file never ends.
    await Promise.all([...loopsRunning].map((stop) => stop()));
    for (const pid of stopped) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone
      }
    }
    await h.cleanup();
  });

  it('re-adopts the instances of an agent killed -9 ten times in a row, with no failed request', async () => {
    const n1 = nodes[0]!;
    const before = (await live()).map((i) => [i.id, i.node, i.pid, i.restarts]).sort();
    const pidsBefore = h.instancePids(n1.home).sort();
    const traffic = requestLoop();
    const recoveries: number[] = [];
    for (let round = 0; round < 10; round++) {
      await kill9(n1.proc);
      const t0 = performance.now();
      n1.proc = await h.startAgent(n1.name, n1.address, n1.home);
      await waitFor('f1 ready again', async () => ((await nodeStatus('f1')) === 'ready' ? true : undefined), 30_000);
      recoveries.push(performance.now() - t0);
    }
    await sleep(1500);
    const { ok, failed } = await traffic.stop();
    const after = (await live()).map((i) => [i.id, i.node, i.pid, i.restarts]).sort();
    const all = await instances();
    const duplicates = all.filter((i) => i.desired === 'run').length - 2;
    const lost = before.filter((b) => !after.some((a) => a[0] === b[0])).length;
    console.log(
      `FAULT agent-kill9x10: failed ${failed.length}/${ok + failed.length}, instances lost ${lost}, duplicates ${duplicates}, recovery avg ${(recoveries.reduce((a, b) => a + b, 0) / recoveries.length / 1000).toFixed(1)}s max ${(Math.max(...recoveries) / 1000).toFixed(1)}s`,
    );
    assert.deepEqual(after, before, 'same instances, same pids, no restart');
    assert.deepEqual(h.instancePids(n1.home).sort(), pidsBefore, 'no second process on the node');
    assert.ok(pidsBefore.every(alive));
    assert.equal(duplicates, 0);
    assert.ok(ok > 20);
    assert.deepEqual(failed, []);
  });

  it("keeps a SIGSTOPped agent's node suspect while its app answers, and moves nothing", async () => {
    const n1 = nodes[0]!;
    const before = (await live()).map((i) => [i.id, i.node, i.pid]).sort();
    assert.deepEqual(before.map((i) => i[1]).sort(), ['f1', 'f2'], 'one replica per node');
    const traffic = requestLoop();
    signal(n1.proc!.pid!, 'SIGSTOP');
    const seen = new Set<string>();
    const t0 = performance.now();
    while (performance.now() - t0 < 10_000) {
      seen.add(await nodeStatus('f1'));
      await sleep(250);
    }
    signal(n1.proc!.pid!, 'SIGCONT');
    const t1 = performance.now();
    await waitFor('f1 ready after SIGCONT', async () => ((await nodeStatus('f1')) === 'ready' ? true : undefined), 30_000);
    const recovery = performance.now() - t1;
    await sleep(1000);
    const { ok, failed } = await traffic.stop();
    const after = (await live()).map((i) => [i.id, i.node, i.pid]).sort();
    console.log(
      `FAULT agent-sigstop10s: failed ${failed.length}/${ok + failed.length}, node states seen ${[...seen].join('/')}, instances moved ${after.filter((a) => !before.some((b) => b[0] === a[0])).length}, duplicates ${after.length - 2}, recovery ${(recovery / 1000).toFixed(1)}s`,
    );
    assert.ok(seen.has('suspect'), `the silent node is suspect (seen: ${[...seen].join(', ')})`);
    assert.ok(!seen.has('down'), 'its app still answers: never down');
    assert.deepEqual(after, before);
    assert.deepEqual(failed, []);
  });

  it('replaces the replica of a SIGSTOPped agent and app on the other node, and stops the stale one on SIGCONT', async () => {
    const n1 = nodes[0]!;
    const mine = (await live()).filter((i) => i.node === 'f1');
    assert.equal(mine.length, 1);
    const appPid = mine[0].pid as number;
    const traffic = requestLoop();
    const t0 = performance.now();
    signal(n1.proc!.pid!, 'SIGSTOP');
    signal(-appPid, 'SIGSTOP');
    await waitFor('f1 down', async () => ((await nodeStatus('f1')) === 'down' ? true : undefined), 15_000);
    const downAfter = performance.now() - t0;
    await waitFor(
      'two ready replicas on f2',
      async () => {
        const l = (await live()).filter((i) => i.node === 'f2' && i.state === 'ready');
        return l.length === 2 ? l : undefined;
      },
      30_000,
    );
    const replacedAfter = performance.now() - t0;
    const rest = 10_000 - (performance.now() - t0);
    if (rest > 0) await sleep(rest);
    signal(-appPid, 'SIGCONT');
    signal(n1.proc!.pid!, 'SIGCONT');
    const t1 = performance.now();
    await waitFor(
      'f1 ready, its stale instance stopped',
      async () => {
        if ((await nodeStatus('f1')) !== 'ready') return undefined;
        return !alive(appPid) && h.instancePids(n1.home).length === 0 ? true : undefined;
      },
      45_000,
    );
    const cleanAfter = performance.now() - t1;
    await sleep(1500);
    const { ok, failed } = await traffic.stop();
    const l = await live();
    console.log(
      `FAULT agent+app-sigstop10s: router failed ${failed.length}/${ok + failed.length}, down after ${(downAfter / 1000).toFixed(1)}s, replacement ready after ${(replacedAfter / 1000).toFixed(1)}s, stale stopped ${(cleanAfter / 1000).toFixed(1)}s after SIGCONT, duplicates ${l.length - 2}`,
    );
    assert.equal(l.length, 2, 'two replicas, no duplicate');
    assert.ok(l.every((i) => i.node === 'f2' && i.state === 'ready'));
    assert.equal(new Set(l.map((i) => i.pid)).size, 2);
    assert.ok(l.every((i) => alive(i.pid)));
    assert.equal((await h.viaRouter('hello.localhost')).status, 200);
    // Requests in flight to the frozen app time out (5 s here): reported, not asserted.
  });
});
