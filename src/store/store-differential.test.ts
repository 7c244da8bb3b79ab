import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { MemoryStore } from './memory-store.js';
import { SqliteStore } from './sqlite-store.js';
import { apply, feed, op, state } from './store-differential.fixture.js';

// Beyond the contract's examples: random sequences of app, revision, rollout, instance, node, secret
// and run-queue calls give the same answers from the memory store as from SQLite (a refusal counts
// as the same answer), and append the same events (ids, kinds, apps, payloads, in order).
describe('store differential: memory store and SQLite agree', () => {
  it('answer every call of a random sequence alike, append the same events, and end in the same state (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
        const dir = mkdtempSync(join(tmpdir(), 'pilot-differential-'));
        const sqlite = new SqliteStore(join(dir, 'pilot.db'));
        const memory = new MemoryStore();
        try {
          for (const s of [sqlite, memory]) {
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
            const [a, b] = [await apply(sqlite, o, now), await apply(memory, o, now)];
            assert.deepEqual(
              JSON.parse(JSON.stringify(b ?? null)),
              JSON.parse(JSON.stringify(a ?? null)),
              `step ${i}: ${JSON.stringify(o)}`,
            );
            assert.deepEqual(
              JSON.parse(JSON.stringify(await feed(memory))),
              JSON.parse(JSON.stringify(await feed(sqlite))),
              `step ${i}: events of ${JSON.stringify(o)}`,
            );
          }
          assert.deepEqual(JSON.parse(JSON.stringify(await state(memory))), JSON.parse(JSON.stringify(await state(sqlite))));
        } finally {
          sqlite.close();
          memory.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 150 },
    );
  });
});
