/**
 * The SSE feed over a real socket, against a real SQLite store: resume across a forced disconnect
 * without loss or repeat, a reset for an expired or unknown id, a slow client cut with a log line,
 * one app's events only.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { parseSse, type SseMessage } from '../api/sse.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { DEFAULT_EVENT_STREAM, serveEventStream, type EventStreamSettings } from './event-stream.js';

const logLines: string[] = [];
const log = pino(
  { level: 'info' },
  new Writable({
    write: (c: Buffer, _e, cb) => {
      logLines.push(c.toString());
      cb();
    },
  }),
);

let dir = '';
let store: SqliteStore;
let server: Server;
let base = '';
let settings: EventStreamSettings = DEFAULT_EVENT_STREAM;
const stop = new AbortController();

/** A connection to the feed: its messages as they come, and a way to cut it. */
function connect(
  query: string,
  headers: Record<string, string> = {},
): Promise<{ res: IncomingMessage; messages: AsyncGenerator<SseMessage> }> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}/?${query}`, { headers: { accept: 'text/event-stream', ...headers } }, (res) =>
      resolve({ res, messages: parseSse(res) }),
    );
    req.on('error', reject);
    req.end();
  });
}

async function append(n: number, app: string | null = 'shop', payload: Record<string, unknown> = {}): Promise<void> {
  for (let i = 0; i < n; i++) await store.appendEvent({ kind: 'instance.state', app: app ?? undefined, time: Date.now(), payload });
}

describe('event stream (SSE)', { timeout: 120_000 }, () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pilot-sse-'));
    store = new SqliteStore(join(dir, 'pilot.db'));
    server = createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      const raw = req.headers['last-event-id'] ?? u.searchParams.get('after') ?? undefined;
      void serveEventStream(store, res, {
        after: raw === undefined ? undefined : Number(raw),
        app: u.searchParams.get('app') ?? undefined,
        settings,
        log,
        stop: stop.signal,
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    stop.abort();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('resumes after a forced disconnect with Last-Event-ID: every id once, in order', async () => {
    const start = (await store.eventBounds()).lastId;
    const total = 400;
    // Events keep coming in bursts while the client is cut and comes back.
    let written = 0;
    const writer = (async () => {
      while (written < total) {
        await append(20);
        written += 20;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const got: number[] = [];
    let last = String(start);
    let cuts = 0;
    while (got.length < total) {
      const c = await connect('', { 'last-event-id': last });
      for await (const m of c.messages) {
        assert.equal(m.event, 'instance.state');
        got.push(Number(m.id));
        last = m.id!;
        // Cut the connection mid stream, twice, at uneven points.
        if ((cuts === 0 && got.length === 57) || (cuts === 1 && got.length === 211)) {
          cuts++;
          c.res.destroy();
          break;
        }
        if (got.length === total) {
          c.res.destroy();
          break;
        }
      }
    }
    await writer;
    assert.equal(cuts, 2);
    assert.deepEqual(
      got,
      Array.from({ length: total }, (_, i) => start + i + 1),
    );
  });

  it('says `reset` for an expired id (older than retention) and for an unknown one, then follows from the last id', async () => {
    await append(5);
    const { lastId } = await store.eventBounds();
    await store.trimEvents({ keep: 2, before: 0 });
    const c = await connect('after=1');
    const first = (await c.messages.next()).value as SseMessage;
    assert.equal(first.event, 'reset');
    assert.equal(first.id, String(lastId));
    assert.deepEqual({ ...JSON.parse(first.data), message: undefined }, { reason: 'expired', requested: 1, lastId, message: undefined });
    await append(1);
    const next = (await c.messages.next()).value as SseMessage;
    assert.equal(next.id, String(lastId + 1), 'live events follow the reset, nothing skipped');
    c.res.destroy();

    const u = await connect('', { 'last-event-id': String(lastId + 1000) });
    const r = (await u.messages.next()).value as SseMessage;
    assert.equal(r.event, 'reset');
    assert.equal(JSON.parse(r.data).reason, 'unknown');
    u.res.destroy();

    // The last kept id, or the one just before the first kept, is a clean resume.
    const ok = await connect('', { 'last-event-id': String(lastId + 1) });
    await append(1);
    assert.equal(((await ok.messages.next()).value as SseMessage).id, String(lastId + 2));
    ok.res.destroy();
  });

  it('without an id follows from now on; with ?app only that app', async () => {
    await append(3, 'blog');
    const c = await connect('app=shop');
    await append(2, 'blog');
    await append(1, null);
    await append(1, 'shop');
    const m = (await c.messages.next()).value as SseMessage;
    const e = JSON.parse(m.data);
    assert.equal(e.app, 'shop');
    assert.equal(Number(m.id), (await store.eventBounds()).lastId);
    c.res.destroy();
  });

  it('cuts a client that stops reading once its buffer is full, with a log line; memory stays bounded', async () => {
    settings = { ...DEFAULT_EVENT_STREAM, highWaterBytes: 64 * 1024, stallMs: 500, pageSize: 100 };
    try {
      const c = await connect('');
      c.res.pause(); // reads nothing more: the kernel buffers fill, then the server's
      const big = 'x'.repeat(16 * 1024);
      // Events keep coming (800 KB a batch) until the server gives up on the client: more than the loopback buffers hold.
      let line: string | undefined;
      for (let batch = 0; batch < 300 && !line; batch++) {
        for (let j = 0; j < 50; j++) await store.appendEvent({ kind: 'instance.state', app: 'shop', time: Date.now(), payload: { big } });
        await new Promise((r) => setTimeout(r, 20));
        line = logLines.find((l) => l.includes('events client too slow'));
      }
      if (!line) {
        await new Promise((r) => setTimeout(r, settings.stallMs * 4));
        line = logLines.find((l) => l.includes('events client too slow'));
      }
      assert.ok(line, 'the cut is logged');
      // Reading again, the client sees what was sent, then the end of the stream.
      const closed = new Promise<void>((r) => c.res.socket.once('close', () => r()));
      c.res.resume();
      await closed;
      const j = JSON.parse(line);
      assert.ok(
        j.unsentBytes >= 64 * 1024 && j.unsentBytes < 64 * 1024 + 100 * 17 * 1024,
        `unsent ${j.unsentBytes} bytes: bounded by the high-water mark and one page`,
      );
      assert.ok(j.lastSent > 0);
    } finally {
      settings = DEFAULT_EVENT_STREAM;
    }
  });

  it('sends heartbeat comments while nothing happens', async () => {
    settings = { ...DEFAULT_EVENT_STREAM, heartbeatMs: 50 };
    try {
      const c = await connect('');
      const text = await new Promise<string>((resolve) => {
        let s = '';
        c.res.on('data', (d: Buffer) => {
          s += d.toString();
          if (s.split(': heartbeat').length > 2) resolve(s);
        });
      });
      assert.match(text, /^retry: 1000\n\n(: heartbeat\n\n)+/);
      c.res.destroy();
    } finally {
      settings = DEFAULT_EVENT_STREAM;
    }
  });
});
