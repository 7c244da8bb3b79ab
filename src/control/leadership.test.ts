import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { pino } from 'pino';
import type { ClusterView } from '../api/wire.js';
import { isPilotError } from '../core/errors.js';
import pg from 'pg';
import { openPostgresStore } from '../store/postgres-store.js';
import { postgresUnavailable, startPostgres, type PgCluster } from '../store/test-postgres.js';
import { selfSigned, type SelfSigned } from '../os/test-certs.js';
import { storeChoice } from './control-store.js';
import { startControlPlane, type ControlPlane } from './server.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function get<T>(cp: ControlPlane, path: string): Promise<{ status: number; body: T }> {
  const res = await fetch(cp.apiUrl + path, { headers: { authorization: `Bearer ${cp.adminToken}` } });
  return { status: res.status, body: (await res.json()) as T };
}

/** A replica on PostgreSQL in one process: silent, no GC timer, a 1.5 s lease. */
function startReplica(home: string, url: string, more: Partial<Parameters<typeof startControlPlane>[0]>): Promise<ControlPlane> {
  return startControlPlane({
    home,
    host: '127.0.0.1',
    port: 0,
    routerHost: '127.0.0.1',
    routerPort: 0,
    logger: pino({ level: 'silent' }),
    gcIntervalMs: 0,
    store: { kind: 'postgres', url },
    lease: { leaseMs: 1500 },
    ...more,
  });
}

/** The second replica shares the first one's tokens and sealing key (README: "Running Pilot highly available"). */
function shareSecrets(from: string, to: string): void {
  mkdirSync(to, { recursive: true, mode: 0o700 });
  for (const f of ['admin-token', 'join-token', 'router-token', 'secret.key']) copyFileSync(join(from, f), join(to, f));
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('store choice (--store, PILOT_STORE, --store-file)', () => {
  const refused = (fn: () => unknown, re: RegExp): void =>
    assert.throws(
      fn,
      (err: unknown) => isPilotError(err) && err.code === 'invalid_argument' && re.test(err.message) && !err.message.includes('s3cret'),
    );
  it('defaults to SQLite; takes postgres:// and postgresql:// URLs', () => {
    assert.deepEqual(storeChoice({}), { kind: 'sqlite' });
    assert.deepEqual(storeChoice({ env: '' }), { kind: 'sqlite' });
    assert.deepEqual(storeChoice({ flag: 'sqlite' }), { kind: 'sqlite' });
    assert.deepEqual(storeChoice({ flag: 'postgres://pilot@db1:5432/pilot' }), {
      kind: 'postgres',
      url: 'postgres://pilot@db1:5432/pilot',
    });
    assert.deepEqual(storeChoice({ env: 'postgresql://pilot@db1/pilot' }), { kind: 'postgres', url: 'postgresql://pilot@db1/pilot' });
    // The flag wins over the environment.
    assert.deepEqual(storeChoice({ flag: 'sqlite', env: 'postgres://x@y/z' }), { kind: 'sqlite' });
  });
  it('refuses other schemes, no host, no database, garbage, and a password on the command line (masked in the message)', () => {
    refused(() => storeChoice({ flag: 'mysql://pilot@db/pilot' }), /--store mysql:\/\/pilot@db\/pilot: not a store/);
    refused(() => storeChoice({ flag: 'postgres:///pilot' }), /not a store/);
    refused(() => storeChoice({ flag: 'postgres://pilot@db1' }), /not a store/);
    refused(() => storeChoice({ flag: 'postgres://pilot@db1/' }), /not a store/);
    refused(() => storeChoice({ flag: 'db1 s3cret' }), /not a store/);
    refused(() => storeChoice({ env: 'file:///etc/passwd' }), /PILOT_STORE file:/);
    refused(() => storeChoice({ flag: 'postgres://pilot:s3cret@db1/pilot' }), /holds a password/);
    // The environment and a file may hold one.
    assert.equal(storeChoice({ env: 'postgres://pilot:s3cret@db1/pilot' }).kind, 'postgres');
  });
  it('reads --store-file, refusing one other users can read or that is missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pilot-store-file-'));
    try {
      const f = join(dir, 'store');
      writeFileSync(f, 'postgres://pilot:s3cret@db1/pilot\n', { mode: 0o600 });
      assert.deepEqual(storeChoice({ file: f }), { kind: 'postgres', url: 'postgres://pilot:s3cret@db1/pilot' });
      writeFileSync(join(dir, 'open'), 'postgres://pilot:s3cret@db1/pilot\n', { mode: 0o644 });
      refused(() => storeChoice({ file: join(dir, 'open') }), /readable by other users/);
      refused(() => storeChoice({ file: join(dir, 'missing') }), /--store-file .*missing: ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('one SQLite process', () => {
  it('is always the leader, without a token; the cluster view names the store and blobs', async () => {
    const home = mkdtempSync(join(tmpdir(), 'pilot-sole-'));
    const cp = await startControlPlane({
      home,
      host: '127.0.0.1',
      port: 0,
      routerHost: '127.0.0.1',
      routerPort: 0,
      logger: pino({ level: 'silent' }),
      gcIntervalMs: 0,
    });
    try {
      const { status, body } = await get<ClusterView>(cp, '/api/v1/cluster');
      assert.equal(status, 200);
      assert.equal(body.mode, 'single');
      assert.deepEqual([body.self.leading, body.self.token, body.replicas.length, body.replicas[0]?.leader], [true, null, 1, true]);
      assert.deepEqual([body.store.kind, body.store.location, body.store.healthy], ['sqlite', join(home, 'pilot.db'), true]);
      assert.deepEqual([body.blobs.kind, body.blobs.location, body.blobs.healthy], ['filesystem', join(home, 'artifacts'), true]);
      const metrics = await (await fetch(cp.apiUrl + '/metrics', { headers: { authorization: `Bearer ${cp.adminToken}` } })).text();
      assert.match(metrics, /^pilot_leader 1$/m);
      assert.match(metrics, /^pilot_store_call_seconds_count\{method="eventBounds"\} [1-9]/m);
    } finally {
      await cp.close();
      rmSync(home, { recursive: true, force: true });
    }
  });
});

const unavailable = postgresUnavailable();
if (unavailable !== undefined) {
  describe('replicas on PostgreSQL', () => it('runs against PostgreSQL', { skip: unavailable }, () => {}));
} else {
  const cluster: PgCluster = await startPostgres();
  after(() => cluster.stop());

  describe('replicas on PostgreSQL', () => {
    it('one leads with a token, the other follows and answers; a clean stop hands over at once with a higher token', async () => {
      const url = await cluster.createDatabase();
      const root = mkdtempSync(join(tmpdir(), 'pilot-ha-'));
      const homes = ['a', 'b'].map((n) => join(root, n));
      const shared = join(root, 'artifacts');
      const start = (home: string): Promise<ControlPlane> => startReplica(home, url, { artifacts: shared });
      const cps: ControlPlane[] = [];
      try {
        cps.push(await start(homes[0]!));
        // The second replica shares the first one's tokens and sealing key (README: "Running Pilot highly available").
        shareSecrets(homes[0]!, homes[1]!);
        cps.push(await start(homes[1]!));
        // A replica with a sealing key and tokens of its own is refused at start, naming them.
        await assert.rejects(start(join(root, 'stranger')), (err: unknown) => {
          return (
            isPilotError(err) &&
            err.code === 'conflict' &&
            /secret\.key, admin-token, join-token, router-token differ/.test(err.message) &&
            /copy admin-token/.test(err.hint ?? '')
          );
        });
        // One file different is named alone.
        const half = join(root, 'half');
        mkdirSync(half, { recursive: true, mode: 0o700 });
        for (const f of ['admin-token', 'join-token', 'router-token']) copyFileSync(join(homes[0]!, f), join(half, f));
        await assert.rejects(start(half), (err: unknown) => isPilotError(err) && /: secret\.key differ/.test(err.message));
        const [a, b] = cps as [ControlPlane, ControlPlane];
        assert.equal(a.leadership().leading(), true);
        assert.equal(b.leadership().leading(), false);
        const token = a.leadership().token()!;
        for (const cp of [a, b]) {
          const v = (await get<ClusterView>(cp, '/api/v1/cluster')).body;
          assert.equal(v.mode, 'replicated');
          assert.equal(v.leader?.url, a.apiUrl);
          assert.equal(v.leader?.token, token);
          assert.deepEqual(
            v.replicas.map((r) => [r.url, r.leader]).sort(),
            [
              [a.apiUrl, true],
              [b.apiUrl, false],
            ].sort(),
          );
          assert.deepEqual([v.store.kind, v.store.healthy, v.store.location.includes(String(cluster.port))], ['postgres', true, true]);
          assert.equal(v.blobs.location, shared);
        }
        // The follower answers the API from the shared store: an app pushed through it is seen by the leader.
        const pushed = await fetch(b.apiUrl + '/api/v1/apps', {
          method: 'POST',
          headers: { authorization: `Bearer ${b.adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'web', repo: 'https://example.com/web.git' }),
        });
        assert.equal(pushed.status, 201, await pushed.text());
        assert.deepEqual(
          (await get<{ apps: { name: string }[] }>(a, '/api/v1/apps')).body.apps.map((x) => x.name),
          ['web'],
        );
        // Views made of the leader's memory (node health, orphans, an app's autoscaler): a follower passes them on.
        const via = async (cp: ControlPlane, path: string): Promise<[number, string | null]> => {
          const res = await fetch(cp.apiUrl + path, { headers: { authorization: `Bearer ${cp.adminToken}` } });
          await res.text();
          return [res.status, res.headers.get('x-pilot-answered-by')];
        };
        assert.deepEqual(await via(b, '/api/v1/nodes'), [200, a.apiUrl]);
        assert.deepEqual(await via(b, '/api/v1/apps/web'), [200, a.apiUrl]);
        assert.deepEqual(await via(b, '/api/v1/orphans'), [200, a.apiUrl]);
        assert.deepEqual(await via(b, '/api/v1/apps/nope'), [404, a.apiUrl]);
        assert.deepEqual(await via(b, '/api/v1/runs'), [200, null], 'the store answers the rest on any replica');
        assert.deepEqual(await via(a, '/api/v1/nodes'), [200, null]);
        assert.equal((await fetch(b.apiUrl + '/api/v1/nodes')).status, 401, 'passed on only once authenticated');
        // Each replica answers its routers' figures for the others to merge; the traffic view of either covers both.
        const raw = await get<{ layout: string; windowMs: number; revisions: unknown[] }>(b, '/api/v1/replica/traffic?window=10000ms');
        assert.equal(raw.status, 200);
        assert.deepEqual([raw.body.windowMs, raw.body.revisions], [10_000, []]);
        assert.equal((await get(b, '/api/v1/replica/traffic?window=10s')).status, 400);
        assert.equal((await get(b, '/api/v1/replica/traffic?window=999999999ms')).status, 400);
        const all = await get<{ apps: unknown[] }>(a, '/api/v1/traffic?window=10s');
        assert.equal(all.status, 200, JSON.stringify(all.body));
        const metricsB = await (await fetch(b.apiUrl + '/metrics', { headers: { authorization: `Bearer ${b.adminToken}` } })).text();
        assert.match(metricsB, /^pilot_leader 0$/m);
        // A clean stop releases the lease: the follower leads at its next attempt (≤ 500 ms), not after the lease.
        const t0 = performance.now();
        await a.close();
        cps.shift();
        await waitFor('b to lead', async () => (b.leadership().leading() ? true : undefined), 5000);
        const took = performance.now() - t0;
        assert.ok(b.leadership().token()! > token, 'a new term has a higher token');
        const v = (await get<ClusterView>(b, '/api/v1/cluster')).body;
        assert.equal(v.leader?.url, b.apiUrl);
        assert.deepEqual(await via(b, '/api/v1/nodes'), [200, null], 'the leader answers itself');
        assert.deepEqual(
          v.replicas.map((r) => r.url),
          [b.apiUrl],
          'a stopped replica removes its heartbeat row',
        );
        const metrics = await (await fetch(b.apiUrl + '/metrics', { headers: { authorization: `Bearer ${b.adminToken}` } })).text();
        assert.match(metrics, /^pilot_leader 1$/m);
        assert.match(metrics, /^pilot_leader_changes_total 1$/m);
        console.log(`handover after a clean stop: ${Math.round(took)} ms`);
      } finally {
        for (const cp of cps) await cp.close();
        rmSync(root, { recursive: true, force: true });
        await cluster.dropDatabase(url);
      }
    });

    it('a database lost while running: the leader stops leading within the lease, the API says why, and a leader is back once it returns', async () => {
      const url = await cluster.createDatabase();
      const home = mkdtempSync(join(tmpdir(), 'pilot-ha-lost-'));
      const cp = await startReplica(home, url, { lease: { leaseMs: 1000 } });
      try {
        assert.equal(cp.leadership().leading(), true);
        const token = cp.leadership().token()!;
        await cluster.down();
        const t0 = performance.now();
        await waitFor('the leader to step down', async () => (cp.leadership().leading() ? undefined : true), 10_000);
        const stepDown = performance.now() - t0;
        // The process serves on: liveness answers, the cluster view says the store is unhealthy.
        assert.equal((await fetch(cp.apiUrl + '/healthz')).status, 200);
        const v = (await get<ClusterView>(cp, '/api/v1/cluster')).body;
        assert.deepEqual([v.self.leading, v.store.healthy], [false, false]);
        assert.match(v.store.error ?? '', /PostgreSQL|connect|ECONNREFUSED/);
        const apps = await get<{ error: { code: string; message: string } }>(cp, '/api/v1/apps');
        assert.ok(apps.status >= 500, `a read while the database is away fails (${apps.status})`);
        assert.match(apps.body.error.message, /cannot use the PostgreSQL database/);
        await cluster.up();
        await waitFor('a leader again', async () => (cp.leadership().leading() ? true : undefined), 20_000);
        // Its own lease expired and nobody took it: it takes it again with a new term.
        assert.ok(cp.leadership().token()! > token);
        assert.equal((await get<{ apps: unknown[] }>(cp, '/api/v1/apps')).status, 200);
        console.log(`database lost: stepped down after ${Math.round(stepDown)} ms (lease 1000 ms)`);
      } finally {
        await cluster.up().catch(() => undefined);
        await cp.close();
        rmSync(home, { recursive: true, force: true });
        await cluster.dropDatabase(url);
      }
    });

    it('a certificate set or removed through one replica is served or dropped by the other at once (certificate.changed)', async () => {
      const url = await cluster.createDatabase();
      const root = mkdtempSync(join(tmpdir(), 'pilot-ha-certs-'));
      const homes = ['a', 'b'].map((n) => join(root, n));
      const start = (home: string): Promise<ControlPlane> =>
        startReplica(home, url, { artifacts: join(root, 'artifacts'), https: { port: 0 } });
      const cps: ControlPlane[] = [];
      try {
        cps.push(await start(homes[0]!));
        shareSecrets(homes[0]!, homes[1]!);
        cps.push(await start(homes[1]!));
        const [a, b] = cps as [ControlPlane, ControlPlane];
        // The host's certificate as each replica's router presents it (undefined: no handshake).
        const presented = (cp: ControlPlane): Promise<string | undefined> =>
          new Promise((resolve) => {
            const s = tlsConnect(
              { host: '127.0.0.1', port: cp.routerHttpsPort!, servername: 'shop.example', rejectUnauthorized: false },
              () => {
                const fp = s.getPeerX509Certificate()?.fingerprint256;
                s.destroy();
                resolve(fp);
              },
            );
            s.on('error', () => resolve(undefined));
          });
        const put = async (cp: ControlPlane, method: string, cert?: SelfSigned): Promise<number> => {
          const res = await fetch(`${cp.apiUrl}/api/v1/certs/shop.example`, {
            method,
            headers: { authorization: `Bearer ${cp.adminToken}`, ...(cert ? { 'content-type': 'application/json' } : {}) },
            ...(cert ? { body: JSON.stringify({ cert: cert.cert, key: cert.key }) } : {}),
          });
          await res.text();
          return res.status;
        };
        const first = selfSigned(root, 'first', ['shop.example']);
        const second = selfSigned(root, 'second', ['shop.example']);
        const fingerprint = (c: SelfSigned): string => new X509Certificate(c.cert).fingerprint256;
        // Set through the follower: the leader serves it too. Far below the 60 s certificate pass.
        assert.equal(await put(b, 'PUT', first), 200);
        await waitFor(
          'the leader to serve the first',
          async () => ((await presented(a)) === fingerprint(first) ? true : undefined),
          10_000,
        );
        // Replaced through the leader: the follower serves the new one.
        assert.equal(await put(a, 'PUT', second), 200);
        await waitFor(
          'the follower to serve the second',
          async () => ((await presented(b)) === fingerprint(second) ? true : undefined),
          10_000,
        );
        // Removed through the follower: neither presents it any more.
        assert.equal(await put(b, 'DELETE'), 200);
        await waitFor('the leader to drop it', async () => ((await presented(a)) === undefined ? true : undefined), 10_000);
        assert.equal(await presented(b), undefined);
      } finally {
        for (const cp of cps) await cp.close();
        rmSync(root, { recursive: true, force: true });
        await cluster.dropDatabase(url);
      }
    });

    it('backup through the API on PostgreSQL says to use pg_dump', async () => {
      const url = await cluster.createDatabase();
      const home = mkdtempSync(join(tmpdir(), 'pilot-ha-backup-'));
      const cp = await startReplica(home, url, {});
      try {
        const r = await get<{ error: { code: string; hint: string } }>(cp, '/api/v1/backup');
        assert.equal(r.status, 400);
        assert.match(r.body.error.hint, /pg_dump/);
      } finally {
        await cp.close();
        rmSync(home, { recursive: true, force: true });
        await cluster.dropDatabase(url);
      }
    });

    it('a database of a newer Pilot is refused at once, not waited for', async () => {
      const url = await cluster.createDatabase();
      const home = mkdtempSync(join(tmpdir(), 'pilot-ha-newer-'));
      const c = new pg.Client({ connectionString: url });
      try {
        (await openPostgresStore(url)).close();
        await c.connect();
        await c.query('UPDATE pilot_schema SET version = 999');
        const t0 = performance.now();
        await assert.rejects(
          startReplica(home, url, { storeWaitMs: 30_000 }),
          (err: unknown) => isPilotError(err) && /schema version 999, newer than this Pilot/.test(err.message),
        );
        assert.ok(performance.now() - t0 < 10_000, 'not retried until the deadline');
      } finally {
        await c.end();
        rmSync(home, { recursive: true, force: true });
        await cluster.dropDatabase(url);
      }
    });

    it('an unreachable database at start-up: retried, then a clear error naming it (password masked) after the deadline', async () => {
      const home = mkdtempSync(join(tmpdir(), 'pilot-ha-down-'));
      const t0 = performance.now();
      try {
        await assert.rejects(
          startReplica(home, 'postgres://pilot:s3cret@127.0.0.1:1/pilot', { storeWaitMs: 2500 }),
          (err: unknown) =>
            isPilotError(err) &&
            err.code === 'unavailable' &&
            /did not answer within 3 s/.test(err.message) &&
            err.message.includes('127.0.0.1:1') &&
            !err.message.includes('s3cret'),
        );
        assert.ok(performance.now() - t0 >= 2400, 'it waited before giving up');
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    });
  });
}
