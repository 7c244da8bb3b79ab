import { after, describe, it } from 'node:test';
import { openPostgresStore, restorePostgresBackup } from './postgres-store.js';
import { storeContract } from './store-contract.js';
import { postgresUnavailable, startPostgres } from './test-postgres.js';

// A real PostgreSQL 15 for this file; a database per test; reopen is a second store (its own
// connections) on it: a restarted server, or a second one beside it; a backup is restored into a
// database of its own.
const unavailable = postgresUnavailable();
if (unavailable !== undefined) {
  describe('store contract: postgres', () => it('runs against PostgreSQL', { skip: unavailable }, () => {}));
} else {
  const cluster = await startPostgres();
  after(() => cluster.stop());
  storeContract('postgres', async () => {
    const url = await cluster.createDatabase();
    const copies: string[] = [];
    return {
      store: await openPostgresStore(url),
      reopen: () => openPostgresStore(url),
      openBackup: async (file) => {
        const copy = await cluster.createDatabase();
        copies.push(copy);
        return restorePostgresBackup(copy, file);
      },
      cleanup: async () => {
        for (const u of [url, ...copies]) await cluster.dropDatabase(u);
      },
    };
  });
}
