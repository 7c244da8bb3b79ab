/**
 * The event feed through the control plane's API: JSON pages and SSE on one route, the admin token,
 * clear errors for a bad id or an unknown app, run events as the pipeline reports, a followed run
 * log woken by appends and run events (no polling), and followEvents resuming across a cut.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { request } from 'undici';
import { ApiClient } from '../api/client.js';
import { followEvents, type FeedItem } from '../api/sse.js';
import { startControlPlane, type ControlPlane } from './server.js';

let cp: ControlPlane;
let home = '';
const SHA = 'a'.repeat(40);

/** Answers are read field by field in assertions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above
type Loose = any;

async function call(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Loose; headers: Record<string, unknown> }> {
  const res = await request(cp.apiUrl + path, {
    method: method as 'GET',
    headers: {
      authorization: `Bearer ${cp.adminToken}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.body.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // text
  }
  return { status: res.statusCode, json, headers: res.headers };
}

describe('GET /api/v1/events', { timeout: 120_000 }, () => {
  before(async () => {
    home = mkdtempSync(join(tmpdir(), 'pilot-event-routes-'));
    cp = await startControlPlane({
      home,
      host: '127.0.0.1',
      port: 0,
      routerHost: '127.0.0.1',
      routerPort: 0,
      logger: pino({ level: 'silent' }),
      gcIntervalMs: 0,
    });
  });
  after(async () => {
    await cp.close();
    rmSync(home, { recursive: true, force: true });
  });

  it('lists recent events as JSON (newest `limit`, or those after ?after), with the admin token only', async () => {
    assert.equal((await request(`${cp.apiUrl}/api/v1/events`)).statusCode, 401);
    const run = (await call('POST', '/api/v1/runs', { app: 'shop', commit: SHA })).json.run;
    await call('PATCH', `/api/v1/runs/${run.id}`, { steps: [{ name: 'source', status: 'succeeded' }] });
    const all = await call('GET', '/api/v1/events?app=shop');
    assert.equal(all.status, 200);
    assert.deepEqual(
      all.json.events.map((e: { kind: string }) => e.kind),
      ['run.created', 'run.steps'],
    );
    assert.equal(all.json.lastId, all.json.events[1].id);
    const later = await call('GET', `/api/v1/events?after=${all.json.events[0].id}`);
    assert.deepEqual(
      later.json.events.map((e: { kind: string }) => e.kind),
      ['run.steps'],
    );
    assert.equal((await call('GET', '/api/v1/events?limit=1')).json.events.length, 1);
  });

  it('refuses a bad id, an invalid app name and an unknown app with a code and a hint', async () => {
    const bad = await call('GET', '/api/v1/events', undefined, { accept: 'text/event-stream', 'last-event-id': 'abc' });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'invalid_event_id');
    assert.match(bad.json.error.hint, /Last-Event-ID/);
    assert.equal((await call('GET', '/api/v1/events?after=-1')).json.error.code, 'invalid_event_id');
    assert.equal((await call('GET', '/api/v1/events?after=1e3')).json.error.code, 'invalid_event_id');
    assert.equal((await call('GET', '/api/v1/events?app=Bad_Name')).json.error.code, 'invalid_name');
    const unknown = await call('GET', '/api/v1/events?app=nope', undefined, { accept: 'text/event-stream' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'app_not_found');
  });

  it('streams as SSE what the pipeline reports; followEvents resumes after the server cut every stream', async () => {
    const api = new ApiClient(cp.apiUrl, cp.adminToken);
    const stop = new AbortController();
    const items: FeedItem[] = [];
    let connections = 0;
    let connectedOnce: () => void = () => undefined;
    const firstConnect = new Promise<void>((r) => (connectedOnce = r));
    const follow = followEvents(api, {
      app: 'shop',
      signal: stop.signal,
      retryMs: 50,
      connected: () => {
        connections++;
        connectedOnce();
      },
      on: (item) => {
        items.push(item);
      },
    });
    await firstConnect;
    const run = (await call('POST', '/api/v1/runs', { app: 'shop', commit: SHA })).json.run;
    await call('PATCH', `/api/v1/runs/${run.id}`, { steps: [{ name: 'source', status: 'running' }] });
    const until = async (n: number): Promise<void> => {
      for (let i = 0; i < 200 && items.length < n; i++) await new Promise((r) => setTimeout(r, 25));
    };
    await until(2);
    // Every connection cut by the server (as a proxy or a restart would): the client comes back with Last-Event-ID.
    cp.api.server.closeAllConnections();
    await call('PATCH', `/api/v1/runs/${run.id}`, { steps: [{ name: 'source', status: 'succeeded' }] });
    await call('PATCH', `/api/v1/runs/${run.id}`, { status: 'succeeded' });
    await until(4);
    stop.abort();
    await follow;
    const events = items.map((i) => (i.type === 'event' ? i.event : undefined));
    assert.deepEqual(
      events.map((e) => e?.kind),
      ['run.created', 'run.steps', 'run.steps', 'run.status'],
    );
    const ids = events.map((e) => e!.id);
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => a - b),
    );
    assert.equal(new Set(ids).size, ids.length, 'nothing twice');
    assert.ok(connections >= 2, `reconnected (${connections} connections)`);
  });

  it('a followed run log is woken by appends and ends with the run, without waiting on a timer', async () => {
    const run = (await call('POST', '/api/v1/runs', { app: 'shop', commit: SHA })).json.run;
    const res = await request(`${cp.apiUrl}/api/v1/runs/${run.id}/log?follow=1`, { headers: { authorization: `Bearer ${cp.adminToken}` } });
    const seen: string[] = [];
    let text = '';
    const done = (async () => {
      for await (const chunk of res.body) {
        text += (chunk as Buffer).toString();
        seen.push(text);
      }
    })();
    const waitText = async (re: RegExp): Promise<void> => {
      for (let i = 0; i < 400 && !re.test(text); i++) await new Promise((r) => setTimeout(r, 10));
      assert.match(text, re);
    };
    await call('POST', `/api/v1/runs/${run.id}/log`, 'first line\n', { 'content-type': 'text/plain' });
    await waitText(/first line/);
    await call('POST', `/api/v1/runs/${run.id}/log`, 'second line\n', { 'content-type': 'text/plain' });
    await waitText(/second line/);
    await call('PATCH', `/api/v1/runs/${run.id}`, { status: 'failed', error: 'build broke' });
    await done;
    assert.equal(text, `first line\nsecond line\n--- run #${run.id} failed: build broke\n`);
  });
});
