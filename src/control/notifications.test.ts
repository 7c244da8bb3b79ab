import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { SqliteStore } from '../store/sqlite-store.js';
import { SecretBox } from '../store/secret-box.js';
import type { NewEvent } from '../core/events.js';
import { resolveAppConfig } from '../core/app-config.js';
import type { NotifyEvent, NotifyKind } from '../core/notify.js';
import { Notifier, signature, type NotifierSettings } from './notifications.js';

interface Received {
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

/** A real HTTP receiver on loopback; `answer` decides each request's fate (by its index). */
async function receiver(t: TestContext, answer: (i: number, res: ServerResponse) => void = (_i, res) => res.writeHead(200).end('ok')) {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      answer(got.length - 1, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as { port: number }).port;
  return { got, url: `http://127.0.0.1:${port}/hooks/secret-path-T0KEN?x=1`, port };
}

const FAST: Partial<NotifierSettings> = { timeoutMs: 400, attempts: 3, backoffBaseMs: 50, backoffCapMs: 200 };

async function setup(t: TestContext, settings: Partial<NotifierSettings> = FAST) {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-notify-'));
  const box = new SecretBox(join(dir, 'secret.key'));
  const stores: SqliteStore[] = [];
  const notifiers: Notifier[] = [];
  const open = async () => {
    const store = new SqliteStore(join(dir, 'pilot.db'));
    stores.push(store);
    const n = new Notifier({ store, box, baseUrl: () => 'http://pilot.test:7070', log: pino({ level: 'silent' }), settings });
    notifiers.push(n);
    await n.start();
    return { store, n };
  };
  t.after(async () => {
    for (const n of notifiers) await n.stop();
    for (const s of stores) s.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const first = await open();
  const add = async (
    store: SqliteStore,
    url: string,
    kind: NotifyKind,
    events: NotifyEvent[] = ['deploy.started', 'deploy.live', 'deploy.failed'],
    secret?: string,
  ) =>
    store.addNotifyEndpoint({
      app: 'shop',
      kind,
      urlSealed: box.seal(url),
      urlMasked: 'masked',
      secretSealed: secret ? box.seal(secret) : undefined,
      events,
      afterEvent: (await store.eventBounds()).lastId,
      createdAt: Date.now(),
    });
  return { ...first, open, add, box, dbFile: join(dir, 'pilot.db') };
}

const ev = (kind: NewEvent['kind'], payload: Record<string, unknown>, app = 'shop'): NewEvent => ({ kind, app, time: Date.now(), payload });

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('notifications worker', () => {
  it('sends started and live to a JSON webhook (signed) and a Slack webhook (text + blocks)', async (t) => {
    const { store, add } = await setup(t);
    const json = await receiver(t);
    const slack = await receiver(t);
    await add(store, json.url, 'json', undefined, 'k'.repeat(32));
    await add(store, slack.url, 'slack');
    // Real writes: the rollout and revisions are what the worker reads its facts from.
    await store.upsertApp('shop', resolveAppConfig({}, 'shop'), 1);
    const revision = (commit: string) =>
      store.createRevision({
        app: 'shop',
        artifact: `sha256:${'a'.repeat(64)}`,
        commit,
        dirty: false,
        config: resolveAppConfig({}, 'shop'),
        runId: undefined,
        createdAt: Date.now(),
        image: undefined,
        nodeRuntime: undefined,
      });
    await revision('1'.repeat(40));
    await revision('2'.repeat(40));
    const ro = await store.createRollout({ app: 'shop', fromRevision: 1, toRevision: 2, startedAt: Date.now() });
    await store.appendEvent(ev('instance.state', { instance: 'x', state: 'ready' }));
    await store.finishRollout(ro.id, 'succeeded', undefined, Date.now());
    await store.appendEvent(ev('rollout.started', { rollout: 5, toRevision: 1 }, 'other-app'));
    await until('two JSON deliveries', () => json.got.length >= 2 && slack.got.length >= 2);
    const bodies = json.got.map((r) => JSON.parse(r.body) as Record<string, unknown>);
    assert.deepEqual(
      bodies.map((b) => [b.event, b.app, b.revision, b.previousRevision, b.rollout]),
      [
        ['deploy.started', 'shop', 2, 1, ro.id],
        ['deploy.live', 'shop', 2, 1, ro.id],
      ],
    );
    assert.equal(bodies[1]!.commit, '2'.repeat(40));
    assert.deepEqual((bodies[0]!.links as Record<string, string>).rollout, `http://pilot.test:7070/api/v1/apps/shop/rollouts/${ro.id}`);
    for (const r of json.got) {
      // The receiver's check: HMAC-SHA256 of the raw body with the shared key.
      const expected = 'sha256=' + createHmac('sha256', 'k'.repeat(32)).update(r.body).digest('hex');
      assert.equal(r.headers['x-pilot-signature-256'], expected);
      assert.equal(r.headers['content-type'], 'application/json');
      assert.match(String(r.headers['x-pilot-delivery']), /^\d+$/);
    }
    assert.equal(json.got[0]!.headers['x-pilot-event'], 'deploy.started');
    for (const r of slack.got) {
      const b = JSON.parse(r.body) as { text: string; blocks: { type: string }[] };
      assert.equal(typeof b.text, 'string');
      assert.ok(b.blocks.length >= 2 && b.blocks[0]!.type === 'section');
      assert.equal(r.headers['x-pilot-signature-256'], undefined, 'Slack gets no signature header');
    }
    assert.match((JSON.parse(slack.got[1]!.body) as { text: string }).text, /revision 2 is live/);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(json.got.length, 2, 'other apps and other kinds send nothing');
    const log = await store.listNotifyDeliveries('shop', 10);
    assert.ok(log.every((d) => d.status === 'delivered' && d.log.length === 1 && d.log[0]!.code === 200));
  });

  it('retries a 500 and records both attempts (same bytes, same delivery id); a 404 fails at once', async (t) => {
    const { store, add } = await setup(t);
    const flaky = await receiver(t, (i, res) => res.writeHead(i === 0 ? 500 : 200).end());
    const gone = await receiver(t, (_i, res) => res.writeHead(404).end());
    const a = await add(store, flaky.url, 'json', ['deploy.failed']);
    const b = await add(store, gone.url, 'json', ['deploy.failed']);
    await store.appendEvent(
      ev('rollout.finished', { rollout: 9, toRevision: 3, status: 'failed', reason: 'instance crashed: exit 1\n  last output: boom' }),
    );
    const done = await until('both settled', async () => {
      const ds = await store.listNotifyDeliveries('shop', 10);
      return ds.length === 2 && ds.every((d) => d.status !== 'pending') ? ds : undefined;
    });
    const byEndpoint = new Map(done.map((d) => [d.endpointId, d]));
    const f = byEndpoint.get(a.id)!;
    assert.equal(f.status, 'delivered');
    assert.deepEqual(
      f.log.map((a) => a.code),
      [500, 200],
    );
    assert.equal(f.log[0]!.error, 'HTTP 500');
    const g = byEndpoint.get(b.id)!;
    assert.equal(g.status, 'failed');
    assert.deepEqual(
      g.log.map((a) => a.code),
      [404],
      '4xx: not retried',
    );
    assert.equal(flaky.got[0]!.body, flaky.got[1]!.body, 'a retry sends the same bytes');
    assert.equal(flaky.got[0]!.headers['x-pilot-delivery'], flaky.got[1]!.headers['x-pilot-delivery']);
    const body = JSON.parse(flaky.got[1]!.body) as { event: string; reason: string; summary: string };
    assert.equal(body.event, 'deploy.failed');
    assert.match(body.reason, /last output: boom/);
  });

  it('retries a receiver that never answers, then records it failed (each attempt timed out)', async (t) => {
    const { store, add } = await setup(t);
    const slow = await receiver(t, () => undefined); // never answers
    await add(store, slow.url, 'slack');
    const before = Date.now();
    await store.appendEvent(ev('rollout.started', { rollout: 1, toRevision: 1 }));
    const d = await until('failed', async () => (await store.listNotifyDeliveries('shop', 1)).find((x) => x.status === 'failed'));
    assert.equal(d.attempts, 3);
    assert.deepEqual(
      d.log.map((a) => a.error),
      ['timed out after 400 ms', 'timed out after 400 ms', 'timed out after 400 ms'],
    );
    assert.equal(slow.got.length, 3);
    assert.ok(d.log[1]!.at - d.log[0]!.at >= 400 + 50 - 5, 'back-off after the timeout');
    assert.ok(Date.now() - before < 14_000);
  });

  it('a refused connection is retried and recorded with its error', async (t) => {
    const { store, add } = await setup(t);
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    await new Promise<void>((r) => server.close(() => r()));
    await add(store, `http://127.0.0.1:${port}/hook`, 'json');
    await store.appendEvent(ev('rollout.started', { rollout: 1, toRevision: 1 }));
    const d = await until('failed', async () => (await store.listNotifyDeliveries('shop', 1)).find((x) => x.status === 'failed'));
    assert.equal(d.log.length, 3);
    for (const a of d.log) assert.match(a.error ?? '', /ECONNREFUSED/);
  });

  it('resumes after a restart: pending deliveries and events written while it was down are sent, none twice', async (t) => {
    const { store, n, add, open, dbFile } = await setup(t, { ...FAST, attempts: 10, backoffBaseMs: 300, backoffCapMs: 300 });
    let up = false;
    const r = await receiver(t, (_i, res) => res.writeHead(up ? 200 : 503).end());
    await add(store, r.url, 'json');
    await store.appendEvent(ev('rollout.started', { rollout: 1, toRevision: 2, fromRevision: 1 }));
    await until('a first failed attempt', () => r.got.length >= 1);
    await n.stop();
    store.close();
    // While the control plane is down, the deploy goes on (written by another store over the same file).
    const meanwhile = new SqliteStore(dbFile);
    await meanwhile.appendEvent(ev('rollout.finished', { rollout: 1, toRevision: 2, status: 'succeeded', reason: null }));
    meanwhile.close();
    up = true;
    const again = await open();
    const ds = await until('both delivered', async () => {
      const x = await again.store.listNotifyDeliveries('shop', 10);
      return x.length === 2 && x.every((d) => d.status === 'delivered') ? x : undefined;
    });
    const events = r.got.map((g) => (JSON.parse(g.body) as { event: string }).event);
    assert.deepEqual([...new Set(events)], ['deploy.started', 'deploy.live']);
    assert.equal(r.got.filter((g) => (JSON.parse(g.body) as { event: string }).event === 'deploy.live').length, 1, 'live sent once');
    assert.ok(ds.find((d) => d.event === 'deploy.started')!.log.length >= 2);
  });

  it('an endpoint hears only events after it was added; a test notification answers after its first attempt', async (t) => {
    const { store, n, add } = await setup(t);
    const r = await receiver(t);
    await store.appendEvent(ev('rollout.started', { rollout: 1, toRevision: 1 }));
    await new Promise((res) => setTimeout(res, 100));
    const e = await add(store, r.url, 'json', undefined, 's'.repeat(20));
    const d = await n.test(e, 5000);
    assert.equal(d.status, 'delivered');
    assert.equal(r.got.length, 1);
    const body = JSON.parse(r.got[0]!.body) as { event: string; app: string };
    assert.deepEqual([body.event, body.app], ['test', 'shop']);
    assert.equal(r.got[0]!.headers['x-pilot-signature-256'], signature('s'.repeat(20), r.got[0]!.body));
  });
  it('a receiver answering a huge body or a redirect is not followed nor buffered; a URL sealed with another key fails at once', async (t) => {
    const { store, add, box } = await setup(t);
    const huge = await receiver(t, (_i, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(1024 * 1024, 120);
      for (let k = 0; k < 64; k++) res.write(chunk); // 64 MB the worker must not keep
      res.end();
    });
    const elsewhere = await receiver(t);
    const redirect = await receiver(t, (_i, res) => res.writeHead(307, { location: elsewhere.url }).end());
    await add(store, huge.url, 'json');
    await add(store, redirect.url, 'json');
    const other = new SecretBox(join(mkdtempSync(join(tmpdir(), 'pilot-notify-key-')), 'secret.key'));
    await store.addNotifyEndpoint({
      app: 'shop',
      kind: 'json',
      urlSealed: other.seal('http://127.0.0.1:9/x'),
      urlMasked: 'http://127.0.0.1:9/…',
      secretSealed: undefined,
      events: ['deploy.started'],
      afterEvent: (await store.eventBounds()).lastId,
      createdAt: Date.now(),
    });
    void box;
    await store.appendEvent(ev('rollout.started', { rollout: 1, toRevision: 1 }));
    const ds = await until('all settled', async () => {
      const x = await store.listNotifyDeliveries('shop', 10);
      return x.length === 3 && x.every((d) => d.status !== 'pending') ? x : undefined;
    });
    const [sealed, moved, big] = ds; // newest first: endpoints 3, 2, 1
    assert.equal(big!.status, 'delivered');
    assert.equal(moved!.status, 'failed');
    assert.deepEqual(
      moved!.log.map((a) => [a.code, a.error]),
      [[307, 'HTTP 307']],
    );
    assert.equal(elsewhere.got.length, 0, 'the redirect was not followed');
    assert.equal(sealed!.status, 'failed');
    assert.match(sealed!.log[0]!.error ?? '', /cannot open the endpoint's sealed URL/);
  });
});
