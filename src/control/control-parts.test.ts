import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AgentWaiters } from './agent-waiters.js';
import { OrphanRegistry } from './orphans.js';
import { RevisionCache } from './revision-cache.js';
import { SingleWriter } from './single-writer.js';
import type { RevisionRecord } from '../store/store.js';

describe('agent waiters', () => {
  it('wakes every held poll at once, and a poll ends by itself after its wait', async () => {
    const w = new AgentWaiters();
    let woken = 0;
    const polls = [w.wait(60_000), w.wait(60_000)].map((p) => p.then(() => woken++));
    assert.equal(w.size, 2);
    w.wakeAll();
    await Promise.all(polls);
    assert.equal(woken, 2);
    assert.equal(w.size, 0);
    const t = performance.now();
    await w.wait(20);
    assert.ok(performance.now() - t >= 15);
    assert.equal(w.size, 0, 'a poll that timed out leaves nothing behind');
  });
});

describe('revision cache', () => {
  const rev = (app: string, number: number): RevisionRecord => ({
    app,
    number,
    artifact: 'sha256:x',
    commit: 'c',
    dirty: false,
    config: {} as RevisionRecord['config'],
    runId: undefined,
    createdAt: 0,
    image: undefined,
    nodeRuntime: undefined,
  });

  it('reads a revision once, never caches a miss, and forgets a purged app', async () => {
    const rows = new Map<string, RevisionRecord>([
      ['web/1', rev('web', 1)],
      ['webber/1', rev('webber', 1)],
    ]);
    let reads = 0;
    const cache = new RevisionCache({ getRevision: async (app, n) => (reads++, rows.get(`${app}/${n}`)) });
    assert.equal((await cache.get('web', 1))?.number, 1);
    await cache.get('web', 1);
    assert.equal(reads, 1);
    assert.equal(await cache.get('web', 2), undefined);
    rows.set('web/2', rev('web', 2));
    assert.equal((await cache.get('web', 2))?.number, 2, 'a revision made after a miss is found');
    await cache.get('webber', 1);
    reads = 0;
    cache.forgetApp('web');
    rows.set('web/1', { ...rev('web', 1), artifact: 'sha256:new' });
    assert.equal((await cache.get('web', 1))?.artifact, 'sha256:new', 'an app made again under the same name is read afresh');
    await cache.get('webber', 1);
    assert.equal(reads, 1, 'another app whose name starts the same is kept');
  });
});

describe('orphan registry', () => {
  it('says which orphans are new, keeps when each was first seen, and asks its node to stop one', () => {
    let wakes = 0;
    const o = new OrphanRegistry(() => wakes++);
    const one = { id: 'x-1', app: 'x', revision: 1, state: 'ready', port: 5, pid: 9 };
    assert.deepEqual(o.report('n1', 'node-1', [one]), ['x-1']);
    const since = o.all()[0]!.since;
    assert.deepEqual(o.report('n1', 'node-1', [one, { ...one, id: 'x-2' }]), ['x-2']);
    assert.equal(o.all().find((i) => i.id === 'x-1')!.since, since);
    assert.equal(o.has('n1', 'x-1'), true);
    assert.equal(o.has('n2', 'x-1'), false);
    assert.equal(o.stop('nope'), undefined);
    assert.equal(o.stop('x-2')?.stopping, true);
    assert.equal(wakes, 1);
    assert.deepEqual(o.toStop('n1'), ['x-2']);
    assert.deepEqual(o.report('n1', 'node-1', []), []);
    assert.deepEqual(o.all(), []);
  });
});

describe('single writer', () => {
  it('runs writes one after the other, and a failed one does not stop the next', async () => {
    const w = new SingleWriter();
    const order: string[] = [];
    let active = 0;
    const job = (name: string, fail = false) =>
      w.serial(async () => {
        active++;
        assert.equal(active, 1, 'never two at once');
        await new Promise((r) => setTimeout(r, 5));
        order.push(name);
        active--;
        if (fail) throw new Error(name);
      });
    const results = await Promise.allSettled([job('a'), job('b', true), job('c')]);
    assert.deepEqual(order, ['a', 'b', 'c']);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
  });
});
