/**
 * No client can take a server down: clients that go away in the middle of every kind of streamed
 * or held answer (`pilot logs APP -f` stopped with Ctrl-C, a followed run log, an artifact download
 * and upload, an agent's long poll) leave `pilot up` (control plane, router, agent) running and
 * serving.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { AGENT_PROTOCOL } from '../../src/api/protocol.js';
import { Harness, makeRepo, PILOT, ROOT, sleep, waitFor } from './harness.js';

const h = new Harness();

/** The server is still the same process and answers on the API and through the router. */
async function stillServing(what: string): Promise<void> {
  assert.equal(h.up?.exitCode, null, `pilot up exited after ${what}`);
  assert.equal((await h.apiCall('GET', '/healthz', undefined, null)).status, 200, `API after ${what}`);
  const r = await h.viaRouter('hello.localhost');
  assert.equal(r.status, 200, `router after ${what}: ${r.text}`);
}

/** Start a GET, read until `enough` bytes arrived (or headers only), then cut the connection. */
async function abortMidStream(
  path: string,
  enough: number,
  token = h.token,
  method: 'GET' | 'POST' = 'GET',
  body?: string,
): Promise<number> {
  const ac = new AbortController();
  const res = await request(h.api + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body } : {}),
    signal: ac.signal,
  });
  let got = 0;
  try {
    for await (const chunk of res.body) {
      got += (chunk as Buffer).length;
      if (got >= enough) break;
    }
  } catch {
    // aborted by us
  }
  ac.abort();
  res.body.destroy();
  return res.statusCode;
}

describe('clients that abort never take the server down', { timeout: 300_000 }, () => {
  before(async () => {
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    await h.startUp();
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
  after(() => h.cleanup());

  it('Ctrl-C (SIGINT, then SIGTERM) on `pilot logs APP -f`, three times each', async () => {
    for (const signal of ['SIGINT', 'SIGINT', 'SIGINT', 'SIGTERM'] as const) {
      const p = spawn(process.execPath, [PILOT, 'logs', 'hello', '-f'], { cwd: ROOT, env: h.env(), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise((r) => p.once('exit', r));
      try {
        // Following: the history has arrived and the connection stays open.
        await waitFor('logs -f to print history', () => out.includes('[hello-') || undefined, 30_000);
        await sleep(300);
        assert.equal(p.exitCode, null, `logs -f ended by itself: ${out}`);
        p.kill(signal);
        await exited;
      } finally {
        if (p.exitCode === null) p.kill('SIGKILL');
      }
      await sleep(500); // the agent notices the abort, the control plane the closed upstream
      await stillServing(`${signal} on logs -f`);
    }
  });

  it('a followed run log cut mid-stream', async () => {
    const run = (await h.apiCall('POST', '/api/v1/runs', { app: 'hello' })).json.run as { id: number };
    const lines = Array.from({ length: 2000 }, (_, i) => `line ${i} ${'x'.repeat(60)}`).join('\n') + '\n';
    const put = await request(`${h.api}/api/v1/runs/${run.id}/log`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.token}`, 'content-type': 'text/plain' },
      body: lines,
    });
    assert.equal(put.statusCode, 204, await put.body.text());
    for (let i = 0; i < 3; i++) {
      assert.equal(await abortMidStream(`/api/v1/runs/${run.id}/log?follow=1`, 1000), 200);
      await stillServing('an aborted run log follow');
    }
    // And `pilot logs --run N -f` stopped with Ctrl-C.
    const p = spawn(process.execPath, [PILOT, 'logs', '--run', String(run.id), '-f'], {
      cwd: ROOT,
      env: h.env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((r) => p.once('exit', r));
    await waitFor('the run log', () => out.includes('line 1999') || undefined);
    p.kill('SIGINT');
    await exited;
    await stillServing('SIGINT on logs --run -f');
    await h.apiCall('PATCH', `/api/v1/runs/${run.id}`, { status: 'cancelled' });
  });

  it('an artifact download and an artifact upload cut mid-stream', async () => {
    const bytes = randomBytes(8 * 1024 * 1024);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const up = await request(`${h.api}/api/v1/artifacts/${digest}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${h.token}`, 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    assert.equal(up.statusCode, 201, await up.body.text());
    for (let i = 0; i < 3; i++) {
      assert.equal(await abortMidStream(`/api/v1/artifacts/${digest}`, 64 * 1024), 200);
      await stillServing('an aborted artifact download');
    }
    // An upload whose client dies half-way: the body stream errors inside the handler.
    const other = randomBytes(4 * 1024 * 1024);
    const otherDigest = `sha256:${createHash('sha256').update(other).digest('hex')}`;
    const ac = new AbortController();
    const body = new Readable({ read() {} });
    body.push(other.subarray(0, 1024 * 1024));
    const pending = request(`${h.api}/api/v1/artifacts/${otherDigest}`, {
      method: 'PUT',
      signal: ac.signal,
      body,
      headers: { authorization: `Bearer ${h.token}`, 'content-type': 'application/octet-stream', 'content-length': String(other.length) },
    }).catch((e: unknown) => e);
    await sleep(300);
    ac.abort();
    await pending;
    await sleep(300);
    await stillServing('an aborted artifact upload');
    assert.equal((await h.apiCall('HEAD', `/api/v1/artifacts/${otherDigest}`)).status, 404, 'half an upload is never stored');
  });

  it('an agent long poll cut while held', async () => {
    const joinToken = readFileSync(join(h.home, 'join-token'), 'utf8').trim();
    const reg = await h.apiCall(
      'POST',
      '/api/v1/agent/register',
      {
        protocol: AGENT_PROTOCOL,
        name: 'poller',
        address: '127.0.0.9',
        apiUrl: 'http://127.0.0.9:1',
        agentToken: 'a'.repeat(32),
      },
      joinToken,
    );
    assert.equal(reg.status, 201, JSON.stringify(reg.json));
    const credential = reg.json.credential as string;
    for (let i = 0; i < 3; i++) {
      const ac = new AbortController();
      const pending = request(`${h.api}/api/v1/agent/sync`, {
        method: 'POST',
        signal: ac.signal,
        headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
        body: JSON.stringify({ protocol: AGENT_PROTOCOL, instances: [], waitMs: 30_000 }),
      }).catch((e: unknown) => e);
      await sleep(500);
      ac.abort();
      assert.ok((await pending) instanceof Error, 'the poll was held, then cut by the client');
      await stillServing('an aborted long poll');
    }
  });

  it('logged nothing fatal and no unhandled failure', async () => {
    const log = readFileSync(join(h.home, 'logs', 'pilot.log'), 'utf8');
    assert.doesNotMatch(
      log,
      /"level":60|uncaught exception|unhandled promise rejection/,
      'the log has a fatal line or an unhandled failure',
    );
  });
});
