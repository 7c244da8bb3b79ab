import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { openPostgresStore } from './postgres-store.js';
import { SqliteStore } from './sqlite-store.js';
import { apply, feed, op, state } from './store-differential.fixture.js';
import { postgresUnavailable, startPostgres } from './test-postgres.js';

// Beyond the contract's examples: random sequences of app, revision, rollout, instance, node, secret
// and run-queue calls give the same answers from PostgreSQL as from SQLite (a refusal counts as the
// same answer), append the same events (ids included: a refused write must not use up an id) and
// end in the same state.
const unavailable = postgresUnavailable();
if (unavailable !== undefined) {
  describe('store differential: PostgreSQL and SQLite agree', () => it('runs against PostgreSQL', { skip: unavailable }, () => {}));
} else {
  const cluster = await startPostgres();
  after(() => cluster.stop());
  describe('store differential: PostgreSQL and SQLite agree', () => {
    it('answer every call of a random sequence alike, append the same events, and end in the same state (property)', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
          const dir = mkdtempSync(join(tmpdir(), 'pilot-differential-'));
          const url = await cluster.createDatabase();
          const sqlite = new SqliteStore(join(dir, 'pilot.db'));
          const postgres = await openPostgresStore(url);
          try {
            for (const s of [sqlite, postgres]) {
              await s.upsertNode({
                id: 'n1',
                name: 'node-1',
                address: '127.0.0.1',
                apiUrl: 'http://127.0.0.1:1',
                credentialHash: 'h',
                agentToken: 't',
                registeredAt: 1,
                lastSeenAt: 1,
                scheduling: 'eligible',
                cpus: undefined,
                memoryMb: undefined,
                labels: {},
                runtimes: {},
              });
            }
            for (const [i, o] of ops.entries()) {
              const now = 100 + i;
              const [a, b] = [await apply(sqlite, o, now), await apply(postgres, o, now)];
              assert.deepEqual(
                JSON.parse(JSON.stringify(b ?? null)),
                JSON.parse(JSON.stringify(a ?? null)),
                `step ${i}: ${JSON.stringify(o)}`,
              );
              assert.deepEqual(
                JSON.parse(JSON.stringify(await feed(postgres))),
                JSON.parse(JSON.stringify(await feed(sqlite))),
                `step ${i}: events of ${JSON.stringify(o)}`,
              );
            }
            assert.deepEqual(JSON.parse(JSON.stringify(await state(postgres))), JSON.parse(JSON.stringify(await state(sqlite))));
            assert.deepEqual(await postgres.eventBounds(), await sqlite.eventBounds());
          } finally {
            sqlite.close();
            postgres.close();
            await cluster.dropDatabase(url);
            rmSync(dir, { recursive: true, force: true });
          }
        }),
        { numRuns: 60 },
      );
    });
  });
}
