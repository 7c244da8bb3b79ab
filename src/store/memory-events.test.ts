/** The feed rules every Store keeps, on the in-memory event log and on SQLite alike. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PilotEvent } from '../core/events.js';
import { MemoryEventLog } from './memory-events.js';
import { SqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';

type Feed = Pick<Store, 'appendEvent' | 'readEvents' | 'latestEvents' | 'eventBounds' | 'trimEvents' | 'subscribeEvents'>;

const adapters: { name: string; open: () => { feed: Feed; close: () => void } }[] = [
  { name: 'memory', open: () => ({ feed: new MemoryEventLog(), close: () => undefined }) },
  {
    name: 'sqlite',
    open: () => {
      const dir = mkdtempSync(join(tmpdir(), 'pilot-feed-'));
      const s = new SqliteStore(join(dir, 'pilot.db'));
      return {
        feed: s,
        close: () => {
          s.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
];

for (const a of adapters) {
  describe(`event feed contract: ${a.name}`, () => {
    it('gives increasing ids, filters by app, pages, keeps the newest, trims forward only, never reuses an id', async () => {
      const { feed, close } = a.open();
      try {
        const heard: PilotEvent[] = [];
        const off = feed.subscribeEvents((b) => heard.push(...b));
        for (let i = 1; i <= 10; i++)
          await feed.appendEvent({ kind: 'instance.state', app: i % 2 === 0 ? 'even' : 'odd', time: i * 1000, payload: { i } });
        off();
        assert.deepEqual(
          heard.map((e) => e.id),
          [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        );
        assert.deepEqual(
          (await feed.readEvents({ after: 3, app: 'even', limit: 2 })).map((e) => e.id),
          [4, 6],
        );
        assert.deepEqual(
          (await feed.readEvents({ after: 0, limit: 100 })).map((e) => e.payload.i),
          [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        );
        assert.deepEqual(
          (await feed.latestEvents({ app: 'odd', limit: 2 })).map((e) => e.id),
          [7, 9],
        );
        assert.equal(await feed.trimEvents({ keep: 6, before: 0 }), 4);
        assert.equal(await feed.trimEvents({ keep: 100, before: 5500 }), 1);
        assert.deepEqual(await feed.eventBounds(), { lastId: 10, trimmedThrough: 5 });
        assert.equal(await feed.trimEvents({ keep: 0, before: 0 }), 5);
        assert.equal((await feed.appendEvent({ kind: 'node.status', app: undefined, time: 1, payload: {} })).id, 11);
        assert.deepEqual(await feed.eventBounds(), { lastId: 11, trimmedThrough: 10 });
      } finally {
        close();
      }
    });
  });
}
