import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from './sqlite-store.js';
import { storeContract } from './store-contract.js';

// One database file per test; reopen is a second connection to it (a restarted server).
storeContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-store-contract-'));
  const file = join(dir, 'pilot.db');
  return {
    store: new SqliteStore(file),
    reopen: () => new SqliteStore(file),
    openBackup: (copy) => new SqliteStore(copy, { mustExist: true }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
});
