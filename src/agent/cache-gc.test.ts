import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCacheGc, pickUnused, type CacheKind } from './cache-gc.js';
import { FetchedImages, type ImageRemover } from './image-gc.js';

const HOUR = 3_600_000;
const NOW = 1_000 * HOUR;
const hex = (n: number): string => n.toString(16).padStart(64, '0');
const policy = { idleMs: HOUR, keepUnusedPerApp: 1 };

describe('local cache GC', () => {
  const root = mkdtempSync(join(tmpdir(), 'pilot-cache-gc-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('picks unused entries idle longer than the limit, beyond the newest few per app', () => {
    const e = (key: string, app: string | undefined, hoursAgo: number) => ({
      key: `release:${key}`,
      app,
      lastUsedMs: NOW - hoursAgo * HOUR,
    });
    const pick = (inUse: string[], p: { idleMs: number; keepUnusedPerApp: number }): string[] =>
      pickUnused(entries, new Set(inUse.map((k) => `release:${k}`)), NOW, p).map((k) => k.slice('release:'.length));
    const entries = [
      e('a1', 'a', 1),
      e('a2', 'a', 2),
      e('a3', 'a', 3),
      e('a4', 'a', 0.5),
      e('b1', 'b', 5),
      e('b2', 'b', 6),
      e('x', undefined, 9),
    ];
    assert.deepEqual(
      pick(['a1'], { idleMs: HOUR, keepUnusedPerApp: 1 }),
      ['a2', 'a3', 'b2'],
      'a4 is the newest unused of a; x is the only one of its group',
    );
    assert.deepEqual(pick([], { idleMs: 0, keepUnusedPerApp: 0 }), ['a1', 'a2', 'a3', 'a4', 'b1', 'b2', 'x']);
    assert.deepEqual(pick([], { idleMs: 10 * HOUR, keepUnusedPerApp: 0 }), [], 'nothing idle long enough');
  });

  it('removes old release folders and keeps those in use, being fetched, recent or the newest unused of their app', async () => {
    const home = join(root, 'agent');
    const releases = join(home, 'releases');
    const runtimes = join(home, 'runtimes');
    for (let n = 1; n <= 6; n++) {
      mkdirSync(join(releases, hex(n)), { recursive: true });
      writeFileSync(join(releases, hex(n), 'server.js'), 'x');
    }
    mkdirSync(join(releases, 'downloads'), { recursive: true });
    mkdirSync(join(releases, `.gc-${hex(9)}-dead`), { recursive: true }); // a crash mid-removal
    mkdirSync(join(runtimes, 'node', hex(7)), { recursive: true });
    mkdirSync(join(runtimes, 'node', hex(8)), { recursive: true });
    // Folders an older agent left: their age is their mtime.
    for (let n = 1; n <= 6; n++) utimesSync(join(releases, hex(n)), (NOW - n * 2 * HOUR) / 1000, (NOW - n * 2 * HOUR) / 1000);
    utimesSync(join(releases, hex(6)), (NOW - 60_000) / 1000, (NOW - 60_000) / 1000); // used a minute ago
    for (const n of [7, 8]) utimesSync(join(runtimes, 'node', hex(n)), (NOW - 5 * HOUR) / 1000, (NOW - 5 * HOUR) / 1000);

    const inUse = new Map([
      [`release:${hex(1)}`, 'web'],
      [`runtime:${hex(7)}`, 'web'],
    ]);
    const fetching = new Set([`release:sha256:${hex(5)}`]);
    const gc = new LocalCacheGc({
      stateFile: join(home, 'cache-gc.json'),
      releasesDir: releases,
      runtimesDir: runtimes,
      inUse: () => inUse,
      busy: (kind: CacheKind, digest: string) => fetching.has(`${kind}:${digest}`),
      policy,
    });
    const r = await gc.collect(NOW);
    // 1 is in use; of the unused 2..6 (app unknown): 6 is the newest (kept), 5 is being fetched; 2, 3 and 4 go.
    // Runtime 8 is the newest unused runtime (its own group), so it stays.
    assert.deepEqual(r.removed.sort(), [`release:${hex(2)}`, `release:${hex(3)}`, `release:${hex(4)}`]);
    assert.deepEqual(readdirSync(releases).sort(), [hex(1), hex(5), hex(6), 'downloads'].sort());
    assert.ok(existsSync(join(runtimes, 'node', hex(7))), 'a runtime in use stays');
    assert.ok(existsSync(join(runtimes, 'node', hex(8))));

    // Release 1's instance is gone: it is now the newest unused release of "web" and stays; 5 (fetch over, idle) goes.
    inUse.delete(`release:${hex(1)}`);
    fetching.clear();
    const later = await gc.collect(NOW + 2 * HOUR);
    assert.deepEqual(later.removed, [`release:${hex(5)}`]);
    assert.deepEqual(readdirSync(releases).sort(), [hex(1), hex(6), 'downloads'].sort());
    assert.ok(existsSync(join(runtimes, 'node', hex(7))), 'the newest unused runtime stays');
  });

  it('never renames away a folder an instance was given during the pass', async () => {
    const releases = join(root, 'race', 'releases');
    mkdirSync(join(releases, hex(1)), { recursive: true });
    utimesSync(join(releases, hex(1)), (NOW - 5 * HOUR) / 1000, (NOW - 5 * HOUR) / 1000);
    let calls = 0;
    const gc = new LocalCacheGc({
      stateFile: join(root, 'race', 'cache-gc.json'),
      releasesDir: releases,
      runtimesDir: undefined,
      // unused when the pass lists, in use by the time it would remove (an instance was just assigned)
      inUse: () => (++calls > 2 ? new Map([[`release:${hex(1)}`, 'web']]) : new Map()),
      busy: () => false,
      policy: { idleMs: 0, keepUnusedPerApp: 0 },
    });
    assert.deepEqual((await gc.collect(NOW)).removed, []);
    assert.ok(existsSync(join(releases, hex(1))));
  });
});

describe('images this agent fetched', () => {
  const root = mkdtempSync(join(tmpdir(), 'pilot-image-gc-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('removes only recorded, unused, idle images, and keeps one the engine refuses to remove', async () => {
    const removed: string[] = [];
    const engine: ImageRemover = {
      getImage: (id) => ({
        remove: async () => {
          if (id === 'sha256:busy') throw Object.assign(new Error('conflict: image is being used by a container'), { statusCode: 409 });
          if (id === 'sha256:gone') throw Object.assign(new Error('no such image'), { statusCode: 404 });
          removed.push(id);
        },
      }),
    };
    const f = new FetchedImages(join(root, 'images', 'fetched.json'));
    for (const id of ['sha256:old', 'sha256:busy', 'sha256:gone', 'sha256:used']) f.record(id, 'web', NOW - 5 * HOUR);
    f.record('sha256:fresh', 'web', NOW - 60_000);
    const out = await f.collect(engine, () => new Set(['sha256:used']), NOW, { idleMs: HOUR, keepUnusedPerApp: 0 });
    assert.deepEqual(out, ['sha256:old']);
    assert.deepEqual(removed, ['sha256:old'], 'never asked to remove a used, fresh or unrecorded image');
    assert.equal(f.has('sha256:busy'), true, 'refused by the engine: tried again later');
    assert.equal(f.has('sha256:gone'), false);
    assert.equal(f.has('sha256:old'), false);
    assert.equal(f.has('sha256:used'), true);
  });
});
