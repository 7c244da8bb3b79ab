import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { resolveAppConfig } from '../core/app-config.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { NodeRecord } from '../store/store.js';
import { startControlPlane, type ControlPlane } from './server.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read loosely: the test asserts on what a client sees
type Json = any;

const DIGEST = `sha256:${'a'.repeat(64)}`;
const PILOT = new URL('../../../bin/pilot.js', import.meta.url).pathname;
const SHA = 'c'.repeat(40);

/** Rows of every table of the state database, read by a connection of its own. */
function rowCounts(file: string): Record<string, number> {
  const db = new Database(file, { readonly: true });
  try {
    const tables = (
      db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`).all() as {
        name: string;
      }[]
    ).map((t) => t.name);
    assert.ok(tables.length >= 10, `expected the whole schema, got ${tables.join(', ')}`);
    // Of the event feed, only the events a deploy or a rollback writes itself: the reconciler and the
    // node monitor keep working in the background (instance and node events), dry run or not.
    const count = (t: string): number =>
      (
        db
          .prepare(
            t === 'events'
              ? `SELECT COUNT(*) AS n FROM events WHERE kind IN ('run.created', 'deploy.revision', 'rollout.started')`
              : `SELECT COUNT(*) AS n FROM "${t}"`,
          )
          .get() as { n: number }
      ).n;
    return Object.fromEntries(tables.map((t) => [t, count(t)]));
  } finally {
    db.close();
  }
}

/** What a dry run must not change: every row of these tables, as text. */
function dump(file: string): string {
  const db = new Database(file, { readonly: true });
  try {
    return JSON.stringify(
      ['apps', 'revisions', 'rollouts', 'runs', 'volume_placements'].map((t) => db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`).all()),
    );
  } finally {
    db.close();
  }
}

describe('app routes: deploy plans (dry runs)', () => {
  let home: string;
  let cp: ControlPlane;
  let agentish: Server;
  let dbFile: string;
  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Json }> => {
    const res = await fetch(cp.apiUrl + path, {
      method,
      headers: { authorization: `Bearer ${cp.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: await res.json() };
  };
  /** A dry run, asserting it wrote nothing. */
  const dry = async (path: string, body?: unknown): Promise<{ status: number; json: Json }> => {
    const counts = rowCounts(dbFile);
    const rows = dump(dbFile);
    const r = await call('POST', path, body);
    assert.deepEqual(rowCounts(dbFile), counts, 'a dry run writes no row');
    assert.equal(dump(dbFile), rows, 'a dry run changes no row');
    return r;
  };

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'pilot-app-routes-'));
    dbFile = join(home, 'pilot.db');
    // Three nodes whose "agent" answers its health check (the node monitor then counts them ready).
    agentish = createServer((req, res) => res.writeHead(req.url === '/v1/healthz' ? 200 : 404).end('{}'));
    await new Promise<void>((r) => agentish.listen(0, '127.0.0.1', r));
    const port = (agentish.address() as { port: number }).port;
    const s = new SqliteStore(dbFile);
    const node = (id: string, cpus: number): NodeRecord => ({
      id,
      name: `node-${id}`,
      address: '127.0.0.1',
      apiUrl: `http://127.0.0.1:${port}`,
      credentialHash: `hash-${id}`,
      agentToken: 't',
      registeredAt: 1,
      lastSeenAt: 1,
      scheduling: 'eligible',
      cpus,
      memoryMb: 4096,
      labels: { zone: id === 'n3' ? 'b' : 'a' },
      runtimes: {},
    });
    for (const [id, cpus] of [
      ['n1', 4],
      ['n2', 4],
      ['n3', 1],
    ] as const)
      await s.upsertNode(node(id, cpus));
    const config = resolveAppConfig({ replicas: 2 }, 'web');
    await s.upsertApp('web', config, 1);
    for (const commit of ['a', 'b']) {
      await s.createRevision({
        app: 'web',
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
    await s.setActiveRevision('web', 2, 1);
    for (const [id, n] of [
      ['web-2-aaaaaa', 'n1'],
      ['web-2-bbbbbb', 'n2'],
    ] as const) {
      await s.createInstance({ id, app: 'web', revision: 2, nodeId: n, desired: 'run', createdAt: 1 });
      await s.updateInstanceStatus(id, { state: 'ready', port: 4000, pid: 10, restarts: 0, lastError: undefined, startedAt: 1 }, 1);
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
    // Wait for the node monitor to count the nodes ready (a fresh start gives them a grace period as `suspect`).
    const deadline = Date.now() + 60_000;
    for (;;) {
      const r = await call('POST', '/api/v1/apps/web/revisions?dryRun=true', { config: { replicas: 2 } });
      if (r.json.placements?.length === 2) break;
      if (Date.now() > deadline) throw new Error(`nodes never became ready: ${JSON.stringify(r.json)}`);
      await new Promise((res) => setTimeout(res, 250));
    }
  });
  after(async () => {
    await cp?.close();
    await new Promise((r) => agentish?.close(r));
    await rm(home, { recursive: true, force: true });
  });

  it('a deploy dry run says what would be placed where and what would stop, and writes nothing', async () => {
    const r = await dry('/api/v1/apps/web/revisions?dryRun=true', { config: { replicas: 2 } });
    assert.equal(r.status, 200);
    assert.equal(r.json.dryRun, true);
    assert.equal(r.json.revision, 3, 'the next revision number');
    assert.deepEqual(
      r.json.placements.map((p: Json) => p.node).sort(),
      ['node-n1', 'node-n2'],
      "spread, the app's own room counted free, the fullest node last",
    );
    assert.equal(r.json.unplaced, null);
    assert.deepEqual(
      r.json.stops.map((s: Json) => [s.id, s.revision, s.node]),
      [
        ['web-2-aaaaaa', 2, 'node-n1'],
        ['web-2-bbbbbb', 2, 'node-n2'],
      ],
    );
    assert.equal(r.json.recreate, false);
    assert.equal(r.json.replicas.replicas, 2);
    // With the artifact and commit of a real deploy too (the artifact need not be published yet... it must be, for a real deploy).
    const full = await dry('/api/v1/apps/web/revisions?dryRun=true', {
      artifact: `sha256:${'9'.repeat(64)}`,
      commit: SHA,
      config: { replicas: 2 },
    });
    assert.equal(full.status, 404);
    assert.equal(full.json.error.code, 'artifact_not_found');
  });

  it('a fixed port without a network namespace per instance is a recreate: the plan says so', async () => {
    const r = await dry('/api/v1/apps/web/revisions?dryRun=true', { config: { replicas: 2, port: 3000 } });
    assert.equal(r.json.recreate, true);
    assert.match(r.json.notes.join('\n'), /fixed port 3000: recreate/);
  });

  it('shows what cannot be placed, and why, without refusing', async () => {
    const big = await dry('/api/v1/apps/web/revisions?dryRun=true', { config: { replicas: 2, resources: { cpu: 8 } } });
    assert.equal(big.status, 200);
    assert.equal(big.json.placements.length, 0);
    assert.equal(big.json.unplaced.count, 2);
    assert.match(big.json.unplaced.reason, /8 CPU, more than any node has/);
    const zone = await dry('/api/v1/apps/web/revisions?dryRun=true', {
      config: { replicas: 2, constraints: { zone: 'b' }, resources: { cpu: 1 } },
    });
    assert.deepEqual(
      zone.json.placements.map((p: Json) => p.node),
      ['node-n3'],
    );
    assert.equal(zone.json.unplaced.count, 1);
    assert.match(zone.json.unplaced.reason, /1 of 2 instances placed/);
    const docker = await dry('/api/v1/apps/web/revisions?dryRun=true', { config: { runtime: 'docker' } });
    assert.match(docker.json.unplaced.reason, /Docker engine/);
  });

  it('plans a first deploy of a new app: nothing stops, pilot.yaml seeds the replica count', async () => {
    const r = await dry('/api/v1/apps/fresh/revisions?dryRun=true', { config: { replicas: 3 } });
    assert.equal(r.status, 200);
    assert.equal(r.json.revision, 1);
    assert.deepEqual(r.json.stops, []);
    assert.equal(r.json.placements.length, 3);
    assert.deepEqual({ ...r.json.replicas, why: undefined }, { replicas: 3, source: 'config', changed: true, why: undefined });
    assert.equal((await call('GET', '/api/v1/apps/fresh')).status, 404, 'the app was not created');
  });

  it('refuses bad input with what to fix, writing nothing', async () => {
    for (const [path, body, status, code] of [
      ['/api/v1/apps/web/revisions?dryRun=maybe', { config: {} }, 400, undefined],
      ['/api/v1/apps/web/revisions?dryRun=true', { config: { name: 'other' } }, 400, 'invalid_config'],
      ['/api/v1/apps/web/revisions?dryRun=true', { config: {}, commit: 'main' }, 400, 'bad_request'],
      ['/api/v1/apps/web/revisions?dryRun=true', { config: {}, artifact: 'sha256:nothex' }, 400, 'invalid_digest'],
      ['/api/v1/apps/Bad_Name/revisions?dryRun=true', { config: {} }, 400, 'invalid_name'],
      ['/api/v1/apps/web/revisions', { config: {} }, 400, 'bad_request'],
      ['/api/v1/apps/web/revisions', { config: {}, artifact: DIGEST }, 400, 'bad_request'],
      ['/api/v1/apps/web/rollback?dryRun=true', { to: 2 }, 409, 'conflict'],
      ['/api/v1/apps/web/rollback?dryRun=true', { to: 9 }, 404, 'revision_not_found'],
      ['/api/v1/apps/nope/rollback?dryRun=true', {}, 404, 'app_not_found'],
    ] as const) {
      const r = await dry(path, body);
      assert.equal(r.status, status, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
      if (code) assert.equal(r.json.error.code, code);
    }
    const missing = await call('POST', '/api/v1/apps/web/revisions', { config: {} });
    assert.match(missing.json.error.message, /required property 'artifact'/);
    // A dry run may leave them out, but not send anything else that is wrong.
    const extra = await dry('/api/v1/apps/web/revisions?dryRun=true', { config: {}, surprise: 1 });
    assert.equal(extra.status, 400);
    assert.match(extra.json.error.message, /surprise|additional/i);
    const badType = await dry('/api/v1/apps/web/revisions?dryRun=true', { config: {}, dirty: 'yes' });
    assert.equal(badType.status, 400);
    assert.match(badType.json.error.message, /dirty/);
  });

  it('a rollback dry run plans the target revision and writes nothing (no rollout, no run)', async () => {
    const r = await dry('/api/v1/apps/web/rollback?dryRun=true', {});
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.revision, 1);
    assert.equal(r.json.placements.length, 2);
    assert.deepEqual(
      r.json.stops.map((s: Json) => s.id),
      ['web-2-aaaaaa', 'web-2-bbbbbb'],
    );
    assert.equal(r.json.replicas.changed, false);
  });

  it('replica count: a `pilot scale` survives a deploy whose pilot.yaml did not change; a changed value wins', async () => {
    assert.equal((await call('POST', '/api/v1/apps/web/scale', { replicas: 3 })).status, 200);
    assert.equal((await call('GET', '/api/v1/apps/web')).json.app.replicasSetBy, 'scale');
    const same = await dry('/api/v1/apps/web/revisions?dryRun=true', { config: { replicas: 2 } });
    assert.equal(same.json.replicas.replicas, 3);
    assert.equal(same.json.replicas.source, 'scale');
    assert.equal(same.json.replicas.changed, false);
    assert.equal(same.json.placements.length, 3);
    const changed = await dry('/api/v1/apps/web/revisions?dryRun=true', { config: { replicas: 1 } });
    assert.deepEqual([changed.json.replicas.replicas, changed.json.replicas.source, changed.json.replicas.changed], [1, 'config', true]);
    assert.match(changed.json.replicas.why, /changed from 2 to 1/);
    const rb = await dry('/api/v1/apps/web/rollback?dryRun=true', {});
    assert.equal(rb.json.placements.length, 3, 'a rollback keeps the scaled count');
    assert.equal((await call('POST', '/api/v1/apps/web/scale', { replicas: 2 })).status, 200);
  });

  describe('CLI', () => {
    const pilot = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      new Promise((resolve) => {
        execFile(
          process.execPath,
          [PILOT, ...args],
          {
            env: { PATH: process.env.PATH ?? '', PILOT_HOME: join(home, 'cli-home'), PILOT_SERVER: cp.apiUrl, PILOT_TOKEN: cp.adminToken },
            timeout: 60_000,
          },
          (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
        );
      });

    it('`pilot rollback --dry-run` prints the plan and changes nothing', async () => {
      const counts = rowCounts(dbFile);
      const r = await pilot('rollback', 'web', '--dry-run');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /rolling web back to revision 1 \(dry run: nothing was changed\)/);
      assert.match(r.stdout, /would start 2 instance\(s\) of revision 1: 1 on node-n\d, 1 on node-n\d/);
      assert.match(r.stdout, /would stop 2 instance\(s\) once the new ones are ready/);
      assert.match(r.stdout, /web-2-aaaaaa \(revision 2\) on node-n1/);
      const json = await pilot('rollback', 'web', '--dry-run', '--to', '1', '--json');
      assert.equal(JSON.parse(json.stdout).revision, 1);
      const bad = await pilot('rollback', 'web', '--dry-run', '--to', '2');
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /revision 2 is already active/);
      assert.deepEqual(rowCounts(dbFile), counts);
      assert.equal((await call('GET', '/api/v1/apps/web')).json.rollouts.length, 0, 'no rollout was made');
    });

    it("`pilot run --dry-run` plans the folder's pilot.yaml without building anything", async () => {
      const dir = join(home, 'app-src');
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'pilot.yaml'), 'name: web\nreplicas: 2\nport: 3000\n');
      const counts = rowCounts(dbFile);
      const r = await pilot('run', dir, '--dry-run');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /deploying web as revision 3 \(dry run: nothing was changed\)/);
      assert.match(r.stdout, /would stop 2 instance\(s\) first \(recreate/);
      assert.match(r.stdout, /note: fixed port 3000: recreate/);
      // A folder whose pilot.yaml is broken gets the config error, and the server is not asked.
      await writeFile(join(dir, 'pilot.yaml'), 'name: web\nreplicas: many\n');
      const bad = await pilot('run', dir, '--dry-run');
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /replicas/);
      assert.deepEqual(rowCounts(dbFile), counts, 'no run recorded, no revision');
    });
  });

  it('a real deploy keeps a `pilot scale` when pilot.yaml did not change, applies a changed value, and logs who set it', async () => {
    const bytes = Buffer.from('not really a tarball: the deploy only checks it is in the repository');
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const put = await fetch(`${cp.apiUrl}/api/v1/artifacts/${digest}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    assert.ok(put.status === 201 || put.status === 200, `artifact upload: ${put.status}`);
    assert.equal((await call('POST', '/api/v1/apps/web/scale', { replicas: 3 })).status, 200);
    const first = await call('POST', '/api/v1/apps/web/revisions', { artifact: digest, commit: SHA, config: { replicas: 2 } });
    assert.equal(first.status, 201, JSON.stringify(first.json));
    assert.equal(first.json.revision.number, 3);
    let app = (await call('GET', '/api/v1/apps/web')).json.app;
    assert.deepEqual([app.replicas, app.replicasSetBy], [3, 'scale'], 'an unchanged pilot.yaml never undoes a scale');
    const second = await call('POST', '/api/v1/apps/web/revisions', { artifact: digest, commit: SHA, config: { replicas: 4 } });
    assert.equal(second.status, 201);
    app = (await call('GET', '/api/v1/apps/web')).json.app;
    assert.deepEqual([app.replicas, app.replicasSetBy], [4, 'config'], 'a changed pilot.yaml value is applied');
    // The first rollout was superseded by the second (the same admission as before).
    const rollouts = (await call('GET', '/api/v1/apps/web')).json.rollouts;
    assert.equal(rollouts.find((r: Json) => r.toRevision === 3)?.status, 'failed');
  });
});
