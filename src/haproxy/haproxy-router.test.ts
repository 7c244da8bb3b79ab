import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { pino } from 'pino';
import type { Route } from '../core/routes.js';
import { PilotError } from '../core/errors.js';
import { send, startUpstream, type Echo, type TestUpstream } from '../router/test-support.js';
import { assignSlots, HaproxyRouter, upsFirst } from './haproxy-router.js';
import { lfQuote, serverWeight } from './config.js';

describe('haproxy: slots and quoting (pure)', () => {
  it('keeps an upstream in its slot, drains the ones that left, fills free slots', () => {
    const s = (id: string) => ({ id, host: '127.0.0.1', port: 1000, weight: 1, state: 'ready' as const });
    const { slots, overflow } = assignSlots([s('a'), s('b'), undefined], [s('b'), s('c')]);
    assert.equal(overflow, false);
    assert.deepEqual(
      slots.map((x) => `${x?.id}:${x?.state}`),
      ['a:drain', 'b:ready', 'c:ready'],
    );
    assert.equal(assignSlots([s('a')], [s('b'), s('c')]).overflow, true);
  });
  it('scales weights into 0-256 and quotes log-format text', () => {
    assert.equal(serverWeight(90, 1), 180);
    assert.equal(serverWeight(10, 3), 7);
    assert.equal(serverWeight(0, 2), 0);
    assert.equal(serverWeight(1, 50), 1);
    assert.equal(lfQuote('50% "x" \\ #$\n'), '"50%% \\"x\\" \\\\ \\#\\$\\n"');
  });
});

describe('haproxy: no reload on a rollout, a reload on a new app, restarted after a crash', () => {
  let dir: string;
  let r: HaproxyRouter;
  let client: Pool;
  let a: TestUpstream;
  let b: TestUpstream;
  const shop = (backends: Route['backends']): Route => ({ app: 'shop', hosts: ['shop.localhost'], backends });
  const u = (x: TestUpstream) => ({ id: x.name, host: x.host, port: x.port });
  const who = async (host = 'shop.localhost'): Promise<string> => (JSON.parse((await send(client, host)).text) as Echo).name;

  before(async () => {
    a = await startUpstream('a');
    b = await startUpstream('b', undefined, '127.0.0.2');
    dir = mkdtempSync(join(tmpdir(), 'pilot-haproxy-'));
    r = await HaproxyRouter.start({ dir, host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }) });
    client = new Pool(r.url, { connections: 4 });
  });
  after(async () => {
    await client.close();
    await r.close();
    await Promise.all([a.close(), b.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('applies instances, weights and revisions through the Runtime API only', async () => {
    await r.apply([shop([{ revision: 1, weight: 100, upstreams: [u(a)] }])]);
    const reloads = r.health.reloads;
    assert.equal(await who(), 'a');
    await r.apply([
      shop([
        { revision: 1, weight: 0, upstreams: [u(a)] },
        { revision: 2, weight: 100, upstreams: [u(b)] },
      ]),
    ]);
    for (let i = 0; i < 5; i++) assert.equal(await who(), 'b');
    await r.apply([shop([{ revision: 2, weight: 100, upstreams: [u(b), u(a)] }])]);
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) seen.add(await who());
    assert.deepEqual([...seen].sort(), ['a', 'b']);
    // More instances than slots (4): that one grows the slots, a reload.
    const many = await Promise.all([1, 2, 3, 4].map((k) => startUpstream(`m${k}`)));
    await r.apply([shop([{ revision: 2, weight: 100, upstreams: [u(a), u(b), ...many.map(u)] }])]);
    assert.equal(r.health.reloads, reloads + 1, 'only the growth reloaded');
    const all = new Set<string>();
    for (let i = 0; i < 30; i++) all.add(await who());
    assert.equal(all.size, 6);
    await Promise.all(many.map((m) => m.close()));
    assert.ok(r.health.runtimeUpdates >= 2);
  });

  it('reloads hitlessly when an app is added', async () => {
    const reloads = r.health.reloads;
    await r.apply([
      shop([{ revision: 1, weight: 100, upstreams: [u(a)] }]),
      { app: 'blog', hosts: ['blog.localhost'], backends: [{ revision: 1, weight: 100, upstreams: [u(b)] }] },
    ]);
    assert.equal(r.health.reloads, reloads + 1);
    assert.equal(await who('blog.localhost'), 'b');
    assert.equal(await who(), 'a');
  });

  it('switches revisions (blue-green, 40 times) under a request loop with no request failed: new servers ready before old ones leave', async () => {
    // Old and new revision in different slots: the switch is `s1 -> maint` and `s2 -> ready` in one batch.
    await r.apply([shop([{ revision: 1, weight: 100, upstreams: [u(a)] }])]);
    const reloads = r.health.reloads;
    const loopClient = new Pool(r.url, { connections: 8 });
    let running = true;
    const failures: string[] = [];
    let total = 0;
    const loops = Array.from({ length: 8 }, async () => {
      while (running) {
        total++;
        try {
          const res = await loopClient.request({ path: '/', method: 'GET', headers: { host: 'shop.localhost' } });
          const text = await res.body.text();
          if (res.statusCode !== 200) failures.push(`${res.statusCode}: ${text.split('\n')[0]}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    });
    try {
      for (let k = 0; k < 40; k++) {
        const [from, to] = k % 2 === 0 ? [a, b] : [b, a];
        await r.apply([
          shop([
            { revision: 1 + (k % 2), weight: 0, upstreams: [u(from)] },
            { revision: 2 - (k % 2), weight: 100, upstreams: [u(to)] },
          ]),
        ]);
        await new Promise((res) => setTimeout(res, 10));
      }
    } finally {
      running = false;
      await Promise.all(loops);
      await loopClient.close();
    }
    assert.equal(r.health.reloads, reloads, 'switches go through the Runtime API');
    assert.deepEqual(failures, [], `${failures.length} of ${total} requests failed`);
  });

  it('orders capacity-removing commands last', () => {
    assert.deepEqual(
      upsFirst([
        'set server b/s1 weight 0',
        'set server b/s1 state maint',
        'set server b/s2 addr 1.2.3.4 port 5',
        'set server b/s2 weight 200',
        'set server b/s2 state ready',
        'add map m k v',
      ]),
      [
        'set server b/s2 addr 1.2.3.4 port 5',
        'set server b/s2 weight 200',
        'set server b/s2 state ready',
        'add map m k v',
        'set server b/s1 weight 0',
        'set server b/s1 state maint',
      ],
    );
  });

  it('fails no request of a steady loop across 10 reloads (an http limit changing each time)', async () => {
    const reloads = r.health.reloads;
    const table = (k: number): Route[] => [
      { ...shop([{ revision: 1, weight: 100, upstreams: [u(a)] }]), http: { maxBodyBytes: 4096 + k } },
      { app: 'blog', hosts: ['blog.localhost'], backends: [{ revision: 1, weight: 100, upstreams: [u(b)] }] },
    ];
    // Keep-alive connections that go idle between requests, as browsers' do. The old worker closes
    // its idle ones at a reload; a GET sent on one at that instant sees the connection closed
    // before any byte of an answer, and is sent again once, as browsers do (RFC 9112 §9.3.1).
    const loopClient = new Pool(r.url, { connections: 4, keepAliveTimeout: 2_000 });
    let running = true;
    const failures: string[] = [];
    let total = 0;
    let resent = 0;
    const get = async (): Promise<{ status: number; text: string }> => {
      const res = await loopClient.request({ path: '/', method: 'GET', headers: { host: 'shop.localhost' } });
      return { status: res.statusCode, text: await res.body.text() };
    };
    const loops = [0, 1, 2, 3].map(async () => {
      while (running) {
        total++;
        try {
          const res = await get().catch((err: Error & { code?: string }) => {
            if (err.code !== 'UND_ERR_SOCKET') throw err;
            resent++;
            return get();
          });
          if (res.status !== 200) failures.push(`${res.status}: ${res.text.split('\n')[0]}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
        await new Promise((res) => setTimeout(res, 5));
      }
    });
    try {
      for (let k = 1; k <= 10; k++) await r.apply(table(k));
      await new Promise((res) => setTimeout(res, 300));
    } finally {
      running = false;
      await Promise.all(loops);
      await loopClient.close();
    }
    assert.equal(r.health.reloads, reloads + 10);
    console.log(`# 10 reloads: ${total} requests, ${resent} sent again after a closed idle connection, ${failures.length} failed`);
    assert.deepEqual(failures, [], `${failures.length} of ${total} requests failed`);
  });

  it('starts HAProxy again when it dies, with the last table', async () => {
    const pid = r.health.pid!;
    process.kill(pid, 'SIGKILL');
    const end = performance.now() + 30_000;
    while ((r.health.pid === pid || !r.health.up) && performance.now() < end) await new Promise((res) => setTimeout(res, 50));
    assert.equal(r.health.restarts, 1);
    assert.match(r.health.lastError ?? '', /haproxy exited/);
    await client.close();
    client = new Pool(r.url, { connections: 4 });
    assert.equal(await who('blog.localhost'), 'b');
  });

  it('stops the HAProxy a killed router process left behind before starting its own on the same folder', async () => {
    const leftDir = mkdtempSync(join(tmpdir(), 'pilot-haproxy-left-'));
    // A router process (here a bare node running HaproxyRouter) that dies by SIGKILL: its HAProxy keeps serving.
    const script = `import { HaproxyRouter } from ${JSON.stringify(new URL('./haproxy-router.js', import.meta.url).href)};
import { pino } from 'pino';
const r = await HaproxyRouter.start({ dir: ${JSON.stringify(leftDir)}, host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }) });
process.stdout.write(String(r.health.pid) + '\\n');
setInterval(() => {}, 1e9);`;
    const routerProcess = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
      cwd: process.cwd(),
    });
    let master = 0;
    try {
      master = await new Promise<number>((resolve, reject) => {
        routerProcess.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
        routerProcess.once('exit', (code) => reject(new Error(`the router process exited (${code})`)));
      });
      routerProcess.kill('SIGKILL');
      await new Promise((res) => setTimeout(res, 200));
      process.kill(master, 0); // still serving
      const second = await HaproxyRouter.start({ dir: leftDir, host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }) });
      try {
        let alive = true;
        const end = performance.now() + 10_000;
        while (alive && performance.now() < end) {
          try {
            process.kill(master, 0);
            await new Promise((res) => setTimeout(res, 50));
          } catch {
            alive = false;
          }
        }
        assert.equal(alive, false, 'the leftover master is stopped');
        assert.notEqual(second.health.pid, master);
        assert.equal(second.health.up, true);
      } finally {
        await second.close();
      }
    } finally {
      routerProcess.kill('SIGKILL');
      if (master > 0)
        try {
          process.kill(master, 'SIGKILL');
        } catch {
          // stopped, as it should be
        }
      rmSync(leftDir, { recursive: true, force: true });
    }
  });

  it('says how to install HAProxy when it is missing', async () => {
    await assert.rejects(
      HaproxyRouter.start({ dir, host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }), bin: '/nonexistent/haproxy' }),
      (err: unknown) => err instanceof PilotError && /not installed/.test(err.message) && /apt-get install haproxy/.test(err.hint ?? ''),
    );
  });
});
