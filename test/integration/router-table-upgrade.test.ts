/**
 * The router process across an upgrade to weighted backends: it outlives `pilot up`, so its saved
 * table.json, and the control plane it talks to, may be of the shape before backends. A real
 * `pilot router` process, real upstream servers; a small HTTP server plays the control plane of
 * either version (what it answers is the point of the test).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import { PILOT, tempDir, waitFor } from './harness.js';
import { startUpstream, type Echo, type TestUpstream } from '../../src/router/test-support.js';

interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
}

const children: ChildProcess[] = [];
const homes: string[] = [];

function home(table?: string): string {
  const dir = tempDir('router-upgrade');
  homes.push(dir);
  mkdirSync(join(dir, 'router'), { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, 'router-token'), 'pilot_router_test\n', { mode: 0o600 });
  if (table !== undefined) writeFileSync(join(dir, 'router', 'table.json'), table);
  return dir;
}

async function startRouterProcess(dir: string): Promise<Started> {
  const child = spawn(process.execPath, [PILOT, 'router', '--host', '127.0.0.1', '--port', '0'], {
    env: { ...process.env, PILOT_HOME: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const url = await waitFor('the router to listen', () => /router listening on (\S+)/.exec(out)?.[1], 30_000);
  return { child, url, output: () => out };
}

async function get(url: string, host: string): Promise<{ status: number; text: string }> {
  const res = await request(url, { headers: { host }, headersTimeout: 10_000, bodyTimeout: 10_000 });
  return { status: res.statusCode, text: await res.body.text() };
}

async function stop(s: Started): Promise<void> {
  if (s.child.exitCode !== null) return;
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  await exited;
}

describe('router process: tables of the shape before weighted backends', () => {
  const upstreams: TestUpstream[] = [];
  after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await Promise.all(upstreams.map((u) => u.close()));
    for (const d of homes) rmSync(d, { recursive: true, force: true });
  });

  it('converts an old table.json at start and serves it at once (no control plane at all)', async () => {
    const a = await startUpstream('a');
    const b = await startUpstream('b', undefined, '127.0.0.2');
    upstreams.push(a, b);
    const old = {
      version: 'abcd.7',
      routes: [
        {
          app: 'hello',
          hosts: ['hello.localhost'],
          upstreams: [a.upstream('hello', 3), b.upstream('hello', 3), { ...a.upstream('thief', 3, 'stolen') }],
        },
        { app: 'empty', hosts: ['empty.localhost'], upstreams: [] },
      ],
    };
    const dir = home(JSON.stringify(old));
    const r = await startRouterProcess(dir);
    try {
      const names = new Set<string>();
      for (let k = 0; k < 6; k++) {
        const res = await get(r.url, 'hello.localhost');
        assert.equal(res.status, 200);
        names.add((JSON.parse(res.text) as Echo).name);
      }
      assert.deepEqual([...names].sort(), ['a', 'b']);
      assert.equal((await get(r.url, 'empty.localhost')).status, 502);
      assert.match(r.output(), /saved routing table is in the shape before weighted backends; converted/);
    } finally {
      await stop(r);
    }
  });

  for (const [what, text] of [
    ['not JSON', '{"version": "x.1", "routes": ['],
    ['null', 'null'],
    ['routes that are not a list', '{"routes": {"app": "hello"}}'],
    [
      'junk routes',
      '{"routes": [null, 7, "x", {"app": 5}, {"app": "h", "hosts": "h.localhost", "backends": [{"revision": "1", "weight": 100}]}, {"app": "k", "hosts": ["k.localhost"], "upstreams": [null, {"app": "k"}]}]}',
    ],
  ] as const) {
    it(`starts with a saved table that is ${what}, logs it, and serves`, async () => {
      const r = await startRouterProcess(home(text));
      try {
        const res = await get(r.url, 'nobody.localhost');
        assert.equal(res.status, 404);
        assert.match(r.output(), /saved routing table unreadable|saved routing table has no list of routes|left out|converted/);
      } finally {
        await stop(r);
      }
    });
  }

  it('follows a control plane of either version: new tables with backends, old ones converted; the header says which it reads', async () => {
    const a = await startUpstream('a');
    const v2 = await startUpstream('v2', undefined, '127.0.0.3');
    upstreams.push(a, v2);
    let answer: unknown = { version: 'old.1', routes: [{ app: 'hello', hosts: ['hello.localhost'], upstreams: [a.upstream('hello', 1)] }] };
    const formats: (string | undefined)[] = [];
    const cp = http.createServer((req, res) => {
      formats.push(req.headers['x-pilot-routes'] as string | undefined);
      req.resume();
      req.on('end', () => {
        const body = req.headers.authorization === 'Bearer pilot_router_test' ? answer : { error: { message: 'no' } };
        // Hold the poll briefly, like the real feed, so the router does not spin.
        setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body)), 100);
      });
    });
    await new Promise<void>((r) => cp.listen(0, '127.0.0.1', () => r()));
    const dir = home();
    writeFileSync(join(dir, 'server.json'), JSON.stringify({ api: `http://127.0.0.1:${(cp.address() as AddressInfo).port}` }));
    const r = await startRouterProcess(dir);
    try {
      await waitFor(
        'the old-shape table to be served',
        async () => ((await get(r.url, 'hello.localhost')).status === 200 ? true : undefined),
        20_000,
      );
      assert.equal(formats[0], '2');
      answer = {
        version: 'new.1',
        routes: [
          {
            app: 'hello',
            hosts: ['hello.localhost'],
            backends: [
              { revision: 1, weight: 100, upstreams: [{ id: 'a', host: a.host, port: a.port }] },
              { revision: 2, weight: 0, upstreams: [{ id: 'v2', host: v2.host, port: v2.port }] },
            ],
          },
        ],
      };
      await waitFor(
        'the new table to be applied',
        () => (JSON.parse(readFileSync(join(dir, 'router', 'table.json'), 'utf8')) as { version: string }).version === 'new.1' || undefined,
        20_000,
      );
      const saved = JSON.parse(readFileSync(join(dir, 'router', 'table.json'), 'utf8')) as { routes: { backends: { weight: number }[] }[] };
      assert.deepEqual(
        saved.routes[0]!.backends.map((x) => x.weight),
        [100, 0],
        'saved in the new shape',
      );
      for (let k = 0; k < 5; k++) assert.equal((JSON.parse((await get(r.url, 'hello.localhost')).text) as Echo).name, 'a');
      const pinned = await request(r.url, { headers: { host: 'hello.localhost', 'x-pilot-revision': '2' } });
      assert.equal((JSON.parse(await pinned.body.text()) as Echo).name, 'v2');
    } finally {
      await stop(r);
      await new Promise<void>((res) => {
        cp.close(() => res());
        cp.closeAllConnections();
      });
    }
  });
});
