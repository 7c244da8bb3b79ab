import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isPilotError } from '../core/errors.js';
import { fencedStore, type Fence } from './fence.js';
import { PostgresLease } from './postgres-lease.js';
import { openPostgresStore } from './postgres-store.js';
import { postgresUnavailable, startPostgres, type PgCluster } from './test-postgres.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const lease = (url: string, holder: string, leaseMs = 400): PostgresLease =>
  new PostgresLease(url, { holder, url: `http://${holder}:7070`, version: 'test', leaseMs });

const unavailable = postgresUnavailable();
if (unavailable !== undefined) {
  describe('postgres lease', () => it('runs against PostgreSQL', { skip: unavailable }, () => {}));
} else {
  const cluster: PgCluster = await startPostgres();
  after(() => cluster.stop());

  describe('postgres lease', () => {
    it('one holder at a time; renewal keeps the token, a takeover after expiry raises it, the old holder cannot renew', async () => {
      const url = await cluster.createDatabase();
      (await openPostgresStore(url)).close(); // migrated
      const a = lease(url, 'a');
      const b = lease(url, 'b');
      try {
        assert.equal(await a.attempt(undefined), 1);
        assert.equal(await b.attempt(undefined), undefined, 'b must not take an unexpired lease');
        assert.equal(await a.attempt(1), 1, 'renewal keeps the token');
        assert.equal((await a.leader())?.holder, 'a');
        await sleep(600); // a is "paused" past its lease
        assert.equal(await b.attempt(undefined), 2, 'takeover raises the token');
        assert.equal(await a.attempt(1), undefined, 'the old holder cannot renew a token that moved');
        assert.equal(await a.attempt(undefined), undefined, 'nor take an unexpired lease');
        const l = await b.leader();
        assert.deepEqual([l?.holder, l?.token, l?.expired], ['b', 2, false]);
        // A clean stop hands over at once, with a new token.
        await b.release(2);
        assert.equal(await a.attempt(undefined), 3);
        // A holder that renews late, nobody having taken over, keeps its token (nobody else wrote).
        await sleep(600);
        assert.equal(await a.attempt(3), 3);
      } finally {
        a.close();
        b.close();
        await cluster.dropDatabase(url);
      }
    });

    it("refuses a deposed leader's write in its own transaction, nothing written; the current token's and unfenced writes go through", async () => {
      const url = await cluster.createDatabase();
      const store = await openPostgresStore(url);
      const a = lease(url, 'a', 300);
      const b = lease(url, 'b', 300);
      try {
        const refused: (number | undefined)[] = [];
        let aToken = await a.attempt(undefined);
        const fenceA: Fence = { token: () => aToken, refused: (_t, current) => refused.push(current) };
        const asA = fencedStore(store, fenceA);
        const before = (await store.eventBounds()).lastId;
        await asA.appendEvent({ kind: 'node.status', app: undefined, time: 1, payload: { node: 'n1', status: 'ready', from: 'suspect' } });
        assert.equal((await store.eventBounds()).lastId, before + 1, 'the leader writes while its token is current');
        await sleep(500);
        const bToken = await b.attempt(undefined);
        assert.equal(bToken, 2);
        // a was paused: it still believes it holds token 1.
        await assert.rejects(
          asA.appendEvent({ kind: 'node.status', app: undefined, time: 2, payload: { node: 'n1', status: 'down', from: 'ready' } }),
          (err: unknown) => isPilotError(err) && err.code === 'not_leader' && /token 1 is no longer current.*token is 2/.test(err.message),
        );
        assert.deepEqual(refused, [2]);
        assert.equal((await store.eventBounds()).lastId, before + 1, 'nothing of the refused write is kept');
        const asB = fencedStore(store, { token: () => bToken });
        await asB.appendEvent({ kind: 'node.status', app: undefined, time: 3, payload: { node: 'n1', status: 'ready', from: 'ready' } });
        await store.appendEvent({ kind: 'node.status', app: undefined, time: 4, payload: { node: 'n1', status: 'ready', from: 'ready' } });
        assert.equal((await store.eventBounds()).lastId, before + 3);
        // A process that knows it does not lead (token undefined) writes nothing as leader either.
        aToken = undefined;
        await assert.rejects(
          asA.appendEvent({ kind: 'node.status', app: undefined, time: 5, payload: {} }),
          (err: unknown) => isPilotError(err) && err.code === 'not_leader',
        );
        // Reads are never fenced.
        assert.ok(Array.isArray(await asA.listNodes()));
      } finally {
        a.close();
        b.close();
        store.close();
        await cluster.dropDatabase(url);
      }
    });

    it('lists replicas by their heartbeats, with the database clock', async () => {
      const url = await cluster.createDatabase();
      (await openPostgresStore(url)).close();
      const a = lease(url, 'a');
      const b = lease(url, 'b');
      try {
        await a.heartbeat();
        await sleep(50);
        await b.heartbeat();
        const rs = await a.replicas();
        assert.deepEqual(
          rs.map((r) => [r.id, r.url, r.version]),
          [
            ['a', 'http://a:7070', 'test'],
            ['b', 'http://b:7070', 'test'],
          ],
        );
        assert.ok(rs.every((r) => r.silentMs < 10_000 && r.lastSeenAt >= r.startedAt));
        await b.forget();
        assert.deepEqual(
          (await a.replicas()).map((r) => r.id),
          ['a'],
        );
      } finally {
        a.close();
        b.close();
        await cluster.dropDatabase(url);
      }
    });

    it('says the database is unreachable, with the password masked, instead of hanging', async () => {
      const l = new PostgresLease('postgres://pilot:s3cret@127.0.0.1:1/none', { holder: 'x', url: 'u', version: 'v', leaseMs: 500 });
      try {
        await assert.rejects(
          l.attempt(undefined),
          (err: unknown) => isPilotError(err) && /cannot use the PostgreSQL database/.test(err.message) && !err.message.includes('s3cret'),
        );
      } finally {
        l.close();
      }
    });
  });
}
