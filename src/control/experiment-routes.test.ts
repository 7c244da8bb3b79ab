/**
 * The experiment API over a real control plane (SQLite file, HTTP): validation and conflicts with
 * their codes, start / read / end, the planner placing the variant's instances, and a rollout ending the experiment. Instances never get ready here (no
 * agent runs them): test/integration/experiment.test.ts serves real traffic.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { resolveAppConfig } from '../core/app-config.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { NodeRecord } from '../store/store.js';
import { startControlPlane, type ControlPlane } from './server.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read loosely: the test asserts on what a client sees
type Json = any;

const BLOB = Buffer.from('pilot experiment test artifact\n');
const DIGEST = `sha256:${createHash('sha256').update(BLOB).digest('hex')}`;

describe('experiment routes', () => {
  let home: string;
  let cp: ControlPlane;
  let agentish: Server;
  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Json }> => {
    const res = await fetch(cp.apiUrl + path, {
      method,
      headers: { authorization: `Bearer ${cp.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: await res.json() };
  };
  const waitFor = async <T>(what: string, fn: () => Promise<T | undefined>): Promise<T> => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'pilot-exp-routes-'));
    agentish = createServer((req, res) => res.writeHead(req.url === '/v1/healthz' ? 200 : 404).end('{}'));
    await new Promise<void>((r) => agentish.listen(0, '127.0.0.1', r));
    const port = (agentish.address() as { port: number }).port;
    const s = new SqliteStore(join(home, 'pilot.db'));
    const node: NodeRecord = {
      id: 'n1',
      name: 'node-1',
      address: '127.0.0.1',
      apiUrl: `http://127.0.0.1:${port}`,
      credentialHash: 'hash-n1',
      agentToken: 't',
      registeredAt: 1,
      lastSeenAt: 1,
      scheduling: 'eligible',
      cpus: 8,
      memoryMb: 8192,
      labels: {},
      runtimes: {},
    };
    await s.upsertNode(node);
    const config = resolveAppConfig({ replicas: 2 }, 'web');
    for (const app of ['web', 'solo']) {
      await s.upsertApp(app, config, 1);
      for (const commit of app === 'web' ? ['a', 'b', 'c'] : ['a']) {
        await s.createRevision({
          app,
          artifact: DIGEST,
          commit: commit.repeat(40),
          dirty: false,
          config,
          runId: undefined,
          createdAt: 1,
          image: undefined,
          nodeRuntime: undefined,
        });
      }
      await s.setActiveRevision(app, 1, 1);
    }
    s.close();
    cp = await startControlPlane({
      home,
      host: '127.0.0.1',
      port: 0,
      routerHost: '127.0.0.1',
      routerPort: 0,
      logger: pino({ level: 'silent' }),
      workers: 0,
    });
    const put = await fetch(`${cp.apiUrl}/api/v1/artifacts/${DIGEST}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/octet-stream' },
      body: BLOB,
    });
    assert.ok(put.status === 200 || put.status === 201, `artifact upload: ${put.status} ${await put.text()}`);
  });
  after(async () => {
    await cp?.close();
    await new Promise((r) => agentish?.close(r));
    await rm(home, { recursive: true, force: true });
  });

  it('refuses bad input with a 400 naming the field', async () => {
    for (const [body, field] of [
      [{ variant: 2, split: 101 }, '/split'],
      [{ variant: 2, split: -1 }, '/split'],
      [{ variant: 2, split: 12.5 }, '/split'],
      [{ variant: 2, split: 'fifty' }, '/split'],
      [{ variant: 2, split: { n: 50 } }, '/split'],
      [{ variant: 2 }, '/split'],
      [{ split: 50 }, '/variant'],
      [{ variant: 0, split: 50 }, '/variant'],
      [{ variant: 'two', split: 50 }, '/variant'],
    ] as const) {
      const r = await call('POST', '/api/v1/apps/web/experiment', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.json.error.code, 'bad_request');
      assert.ok(
        r.json.error.details.validation.fields.some((f: Json) => f.field === field),
        JSON.stringify(r.json),
      );
    }
    for (const by of ['uid', 'cookie:', 'cookie:a b', 'header:Host', 'header:X\r\nY', 'query:x', `cookie:${'x'.repeat(90)}`]) {
      const r = await call('POST', '/api/v1/apps/web/experiment', { variant: 2, split: 50, by });
      assert.equal(r.status, 400, by);
      assert.match(r.json.error.message, /^by: /);
      assert.equal(r.json.error.details.field, 'by');
      assert.ok(r.json.error.hint);
    }
    const same = await call('POST', '/api/v1/apps/web/experiment', { variant: 1, split: 50 });
    assert.equal(same.status, 400);
    assert.match(same.json.error.message, /already the active revision/);
    const unknown = await call('POST', '/api/v1/apps/web/experiment', { variant: 99, split: 50 });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'revision_not_found');
    const one = await call('POST', '/api/v1/apps/solo/experiment', { variant: 2, split: 50 });
    assert.equal(one.status, 409);
    assert.equal(one.json.error.code, 'experiment_conflict');
    assert.match(one.json.error.message, /has 1 revision\(s\); an experiment needs two/);
    const noApp = await call('POST', '/api/v1/apps/nope/experiment', { variant: 2, split: 50 });
    assert.equal(noApp.status, 404);
    const endNone = await call('POST', '/api/v1/apps/web/experiment/end', { keep: 'a' });
    assert.equal(endNone.status, 409);
    assert.equal(endNone.json.error.code, 'experiment_conflict');
    const badKeep = await call('POST', '/api/v1/apps/web/experiment/end', { keep: 'c' });
    assert.equal(badKeep.status, 400);
    assert.deepEqual((await call('GET', '/api/v1/apps/web/experiment')).json, { experiment: null });
  });

  it('is in the OpenAPI document, with its schemas', async () => {
    const doc = (await call('GET', '/api/v1/openapi.json')).json;
    const start = doc.paths['/api/v1/apps/{app}/experiment'];
    assert.ok(start?.post && start.get, Object.keys(doc.paths).join(' '));
    const body = start.post.requestBody.content['application/json'].schema;
    assert.deepEqual(body.required.sort(), ['split', 'variant']);
    assert.equal(body.properties.split.maximum, 100);
    assert.ok(doc.paths['/api/v1/apps/{app}/experiment/end']?.post);
  });

  it("starts, places the variant's instances, publishes the sticky route; a second start is refused; end --keep a", async () => {
    const r = await call('POST', '/api/v1/apps/web/experiment', { variant: 3, split: 50, by: 'header:X-User' });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    const e = r.json.experiment;
    assert.deepEqual(e.variants, [
      { name: 'a', revision: 1, weight: 50 },
      { name: 'b', revision: 3, weight: 50 },
    ]);
    assert.deepEqual(e.by, { header: 'X-User' });
    const second = await call('POST', '/api/v1/apps/web/experiment', { variant: 2, split: 10 });
    assert.equal(second.status, 409);
    assert.equal(second.json.error.code, 'experiment_conflict');
    // replicas 2 at 50 %: one instance of each revision.
    const byRev = await waitFor('the planner to place both variants', async () => {
      const app = (await call('GET', '/api/v1/apps/web')).json;
      const live = app.instances.filter((i: Json) => i.desired === 'run');
      const count = (rev: number): number => live.filter((i: Json) => i.revision === rev).length;
      return count(1) === 1 && count(3) === 1 ? { a: count(1), b: count(3) } : undefined;
    });
    assert.deepEqual(byRev, { a: 1, b: 1 });
    const got = (await call('GET', '/api/v1/apps/web/experiment')).json.experiment;
    assert.equal(got.status, 'running');
    const end = await call('POST', '/api/v1/apps/web/experiment/end', { keep: 'a' });
    assert.equal(end.status, 200);
    assert.equal(end.json.rollout, null);
    assert.equal(end.json.experiment.kept, 'a');
    await waitFor("b's instance to be drained", async () => {
      const app = (await call('GET', '/api/v1/apps/web')).json;
      return app.instances.some((i: Json) => i.revision === 3 && i.desired === 'run') ? undefined : true;
    });
    const events = (await call('GET', '/api/v1/events?app=web&limit=200')).json.events.map((x: Json) => x.kind);
    assert.ok(events.includes('experiment.started') && events.includes('experiment.ended'), events.join(','));
  });

  it('a rollback (like a deploy) during an experiment ends it; a rollout in progress refuses a new one', async () => {
    const r = await call('POST', '/api/v1/apps/web/experiment', { variant: 2, split: 20 });
    assert.equal(r.status, 201);
    assert.deepEqual(r.json.experiment.by, { cookie: 'pilot_ab' }, 'the default key');
    const back = await call('POST', '/api/v1/apps/web/rollback', { to: 3 });
    assert.equal(back.status, 201, JSON.stringify(back.json));
    const e = (await call('GET', '/api/v1/apps/web/experiment')).json.experiment;
    assert.equal(e.status, 'ended');
    assert.equal(e.kept, null);
    assert.match(e.reason, /a rollout to revision 3 started/);
    const busy = await call('POST', '/api/v1/apps/web/experiment', { variant: 2, split: 20 });
    assert.equal(busy.status, 409);
    assert.equal(busy.json.error.code, 'rollout_in_progress');
    const end = await call('POST', '/api/v1/apps/web/experiment/end', { keep: 'b' });
    assert.equal(end.status, 409);
    assert.equal(end.json.error.code, 'experiment_conflict');
  });
});
