/**
 * Clients with several control-plane addresses (`--server a,b`), against real processes: one
 * `pilot server` behind two TCP relays (each its own process, killed with SIGKILL, standing in for
 * a replica that dies: the shared store that lets two servers run side by side is another part of
 * the issue). A `pilot agent --server A,B --router-port` node runs an app; a `pilot router
 * --server A,B` routes it; the CLI deploys and scales through `--server A,B`. Then:
 *   - relay A killed: the agent carries on through B (it starts the instance `pilot scale` asks
 *     for, through B), without registering again, the running instance's pid unchanged, the node
 *     never down; both routers get the new table and serve with 0 failed requests;
 *   - A back, B killed: the same through A (scaled to 3, the two running kept);
 *   - both gone: the CLI names each address and what it answered; bad lists are refused naming
 *     the entry.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { allocatePort } from '../../src/os/ports.js';
import { Harness, makeRepo, PILOT, ROOT, sleep, tempDir, waitFor } from './harness.js';

const h = new Harness();
const procs = new Set<ChildProcess>();

/** A TCP relay in its own process: 127.0.0.1:port → the server. Killing it cuts every connection through it. */
const RELAY = `const net = require('node:net');
const [port, host, to] = process.argv.slice(1).map((x, i) => (i === 1 ? x : Number(x)));
net.createServer((c) => {
  const u = net.connect(to, host);
  c.pipe(u).pipe(c);
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
}).listen(port, '127.0.0.1', () => console.log('relaying'));`;

function spawnTracked(args: string[], env: NodeJS.ProcessEnv): { proc: ChildProcess; out: () => string } {
  const proc = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  procs.add(proc);
  proc.on('exit', () => procs.delete(proc));
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { proc, out: () => out };
}

async function startRelay(port: number): Promise<ChildProcess> {
  const api = new URL(h.api);
  const r = spawnTracked(['-e', RELAY, String(port), api.hostname, api.port], process.env);
  await waitFor('relay to listen', () => {
    if (r.proc.exitCode !== null) throw new Error(`relay exited: ${r.out()}`);
    return r.out().includes('relaying') || undefined;
  });
  return r.proc;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function kill(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await exited;
}

async function get(router: string, host: string): Promise<{ status: number; text: string }> {
  const res = await request(`${router}/`, { headers: { host }, headersTimeout: 20_000 });
  return { status: res.statusCode, text: await res.body.text() };
}

/** A steady GET loop through each router; stopped by `stop()`. */
function loops(routers: string[]): { stop: () => Promise<void>; ok: () => number; failures: string[] } {
  let stopped = false;
  let ok = 0;
  const failures: string[] = [];
  const running = routers.map(async (router) => {
    while (!stopped) {
      try {
        const r = await get(router, 'hello.localhost');
        if (r.status === 200) ok++;
        else failures.push(`${Date.now()} ${router}: ${r.status} ${r.text.slice(0, 120)}`);
      } catch (err) {
        failures.push(`${Date.now()} ${router}: ${String(err)}`);
      }
      await sleep(20);
    }
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

/** Node statuses seen while `during` runs (polled on the server directly, every 250 ms). */
async function watchNode(during: () => Promise<void>): Promise<string[]> {
  const seen = new Set<string>();
  let done = false;
  const poll = (async () => {
    while (!done) {
      const nodes = (await h.apiCall('GET', '/api/v1/nodes')).json.nodes as { name: string; status: string }[];
      for (const n of nodes) seen.add(`${n.name}:${n.status}`);
      await sleep(250);
    }
  })();
  try {
    await during();
  } finally {
    done = true;
    await poll;
  }
  return [...seen];
}

describe('clients with several control-plane addresses', { timeout: 400_000 }, () => {
  const relayPorts = [0, 0];
  const relays: (ChildProcess | undefined)[] = [undefined, undefined];
  let list = '';
  const node = { home: '', address: '127.0.0.2', port: 0, out: (): string => '' };
  const router = { home: '', port: 0, url: '', out: (): string => '' };

  const cli = (...args: string[]): ReturnType<Harness['cli']> => h.cli(['--server', list, ...args]);
  const pids = (): number[] => h.instancePids(node.home).filter(alive).sort();

  before(async () => {
    await h.startUp({}, 'server', { api: await allocatePort('127.0.0.1'), router: await allocatePort('127.0.0.1') });
    for (const i of [0, 1]) {
      relayPorts[i] = await allocatePort('127.0.0.1');
      relays[i] = await startRelay(relayPorts[i]!);
    }
    list = relayPorts.map((p) => `http://127.0.0.1:${p}`).join(',');
    node.home = h.track(tempDir('n1'));
    node.port = await allocatePort(node.address);
    const joinToken = readFileSync(join(h.home, 'join-token'), 'utf8').trim();
    const agent = spawnTracked(
      [PILOT, 'agent', '--server', list, '--name', 'n1', '--address', node.address, '--router-port', String(node.port)],
      {
        ...h.env(),
        PILOT_HOME: node.home,
        PILOT_JOIN_TOKEN: joinToken,
        PILOT_LOG_LEVEL: process.env.PILOT_TEST_KEEP_LOGS ? 'debug' : 'info',
      },
    );
    node.out = agent.out;
    await waitFor('the agent to join', () => {
      if (agent.proc.exitCode !== null) throw new Error(`agent exited: ${agent.out()}`);
      return agent.out().includes('joined') || undefined;
    });
    router.home = h.track(tempDir('router'));
    router.port = await allocatePort('127.0.0.1');
    router.url = `http://127.0.0.1:${router.port}`;
    const r = spawnTracked([PILOT, 'router', '--server', list, '--port', String(router.port)], {
      ...h.env(),
      PILOT_HOME: router.home,
      PILOT_ROUTER_TOKEN: readFileSync(join(h.home, 'router-token'), 'utf8').trim(),
    });
    router.out = r.out;
    await waitFor('pilot router --server to listen', () => {
      if (r.proc.exitCode !== null) throw new Error(`router exited: ${r.out()}`);
      return r.out().includes('router listening') || undefined;
    });
  });
  after(async () => {
    if (process.env.PILOT_TEST_KEEP_LOGS) {
      const { writeFileSync } = await import('node:fs');
      writeFileSync('/tmp/h-failover-agent.log', node.out());
      writeFileSync('/tmp/h-failover-router.log', router.out());
      const { cpSync } = await import('node:fs');
      cpSync(join(h.home, 'logs'), '/tmp/h-failover-server-logs', { recursive: true });
    }
    for (const p of procs) await kill(p);
    // The node's instances (their process groups): the harness knows only the agents it started itself.
    for (const pid of node.home ? h.instancePids(node.home) : []) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await h.cleanup();
  });

  it('deploys through the CLI with two addresses; the node and `pilot router --server` serve the app', async () => {
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    const r = await cli('run', repo);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const url of [`http://${node.address}:${node.port}`, router.url]) {
      // Settled: 20 answers in a row. Right after a first deploy a node router was seen (2 runs in 7,
      // before any relay was killed) answering 502 "no ready instance" for ~1.6 s after its first 200.
      let inARow = 0;
      let others = 0;
      await waitFor(
        `${url} to serve hello steadily`,
        async () => {
          const ok = (await get(url, 'hello.localhost')).status === 200;
          inARow = ok ? inARow + 1 : 0;
          if (!ok) others++;
          return inARow >= 20 || undefined;
        },
        90_000,
      );
      if (others > 0) console.log(`# ${url}: ${others} answer(s) other than 200 before it settled after the first deploy`);
    }
    assert.equal(pids().length, 1);
  });

  for (const [dead, alive] of [
    [0, 1],
    [1, 0],
  ] as const) {
    it(`carries on through relay ${'AB'[alive]} when relay ${'AB'[dead]} dies: no new registration, same pid, node never down, 0 failed requests`, async () => {
      if (relays[alive]!.exitCode !== null || relays[alive]!.signalCode !== null) relays[alive] = await startRelay(relayPorts[alive]!); // back after the previous case
      const before = pids();
      const l = loops([`http://${node.address}:${node.port}`, router.url]);
      const statuses = await watchNode(async () => {
        await sleep(1500);
        await kill(relays[dead]);
        // Through the other address: the CLI (a POST refused on the dead one, sent to the next), then the agent starts it.
        const want = dead === 0 ? 2 : 3;
        const r = await cli('scale', 'hello', String(want));
        assert.equal(r.code, 0, r.stdout + r.stderr);
        await waitFor(`the agent to run ${want} instance(s)`, () => (pids().length === want ? true : undefined), 60_000);
        // Both routers follow the new table through the other address.
        for (const table of [join(node.home, 'agent', 'router', 'table.json'), join(router.home, 'router', 'table.json')])
          await waitFor(`${table} to hold ${want} upstream(s)`, () => {
            const t = JSON.parse(readFileSync(table, 'utf8')) as { routes: { app: string; backends: { upstreams: unknown[] }[] }[] };
            const n = t.routes.find((x) => x.app === 'hello')?.backends.reduce((s, b) => s + b.upstreams.length, 0);
            return n === want ? true : undefined;
          });
        await sleep(3000);
      });
      await l.stop();
      assert.deepEqual(l.failures, []);
      assert.ok(l.ok() > 20, `only ${l.ok()} requests`);
      const now = pids();
      assert.ok(
        before.every((p) => now.includes(p)),
        `the instances from before (${before.join(',')}) still run: ${now.join(',')}`,
      );
      assert.deepEqual(
        statuses.filter((s) => s.startsWith('n1:')),
        ['n1:ready'],
      );
      assert.equal(node.out().match(/registered with control plane/g)?.length, 1, 'registered once, never again');
      const status = await cli('--json', 'status', 'hello');
      assert.equal(status.code, 0, status.stderr);
    });
  }

  it('leaves a replica that holds its answers (relay A SIGSTOPped) for the next one: the agent and both routers carry on', async () => {
    relays[1] = await startRelay(relayPorts[1]!); // B back; the agent is on A since B died
    const before = pids();
    const l = loops([`http://${node.address}:${node.port}`, router.url]);
    const statuses = await watchNode(async () => {
      await sleep(1000);
      relays[0]!.kill('SIGSTOP'); // accepts connections (the kernel does), answers nothing
      try {
        // The CLI starts on B: a POST to a replica that hangs would be reported, not sent twice.
        const r = await h.cli(['--server', [...list.split(',')].reverse().join(','), 'scale', 'hello', '4']);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        // The agent's long poll through A gives up after its wait plus 10 s, then goes through B.
        await waitFor('the agent to run 4 instances', () => (pids().length === 4 ? true : undefined), 90_000);
        for (const table of [join(node.home, 'agent', 'router', 'table.json'), join(router.home, 'router', 'table.json')])
          await waitFor(
            `${table} to hold 4 upstreams`,
            () => {
              const t = JSON.parse(readFileSync(table, 'utf8')) as { routes: { app: string; backends: { upstreams: unknown[] }[] }[] };
              return t.routes.find((x) => x.app === 'hello')?.backends.reduce((s, b) => s + b.upstreams.length, 0) === 4 || undefined;
            },
            90_000,
          );
      } finally {
        relays[0]!.kill('SIGCONT');
      }
    });
    await l.stop();
    assert.deepEqual(l.failures, []);
    const now = pids();
    assert.ok(
      before.every((p) => now.includes(p)),
      `the instances from before (${before.join(',')}) still run: ${now.join(',')}`,
    );
    assert.deepEqual(
      statuses.filter((s) => s.startsWith('n1:')),
      ['n1:ready'],
    );
    assert.equal(node.out().match(/registered with control plane/g)?.length, 1, 'registered once, never again');
  });

  it('names each address and what it answered when none answers; refuses a bad list naming the entry', async () => {
    for (const p of relays) await kill(p);
    const r = await cli('apps');
    assert.equal(r.code, 1);
    const [a, b] = list.split(',');
    assert.match(
      r.stderr,
      new RegExp(
        `error: no Pilot server answered: ${b} \\(connection refused\\), ${a} \\(connection refused\\)|error: no Pilot server answered: ${a} \\(connection refused\\), ${b} \\(connection refused\\)`,
      ),
    );
    // The routers keep serving what they have.
    assert.equal((await get(router.url, 'hello.localhost')).status, 200);
    assert.equal((await get(`http://${node.address}:${node.port}`, 'hello.localhost')).status, 200);

    const bad = await h.cli(['--server', `${a},,${b}`, 'apps']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /error: --server: entry 2 of 3 is empty/);
    const dup = await h.cli(['--server', `${a},${b},${a}/`, 'apps']);
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /is given twice \(entries 1 and 3\)|is given twice/);
    // The recorded server.json: a single address, as before.
    assert.equal((await h.cli(['apps'])).code, 0);
    const agent = spawnTracked([PILOT, 'agent', '--server', `${a},tcp://cp2:7070`, '--name', 'n9'], {
      ...h.env(),
      PILOT_HOME: h.track(tempDir('n9')),
      PILOT_JOIN_TOKEN: 'x',
    });
    const code = await new Promise((r) => agent.proc.once('exit', r));
    assert.equal(code, 1);
    assert.match(agent.out(), /error: --server: "tcp:\/\/cp2:7070" is not a server address: tcp: is not http or https/);
  });
});
