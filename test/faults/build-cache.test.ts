/**
 * Faults around the build cache: its disk full (a 256 KiB tmpfs), `pilot run` killed with -9 in the
 * middle of the install. What a user cares about: the deploy still succeeds (a cache never fails a
 * build), the log says what happened, and the next run is correct.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeNativeApp, SERVER_JS } from '../../src/pipeline/build-cache-app.fixture.js';
import { git, Harness, makeRepo, PILOT, ROOT, tempDir, waitFor } from '../integration/harness.js';

const isRoot = process.getuid?.() === 0;

describe('build cache under faults', { timeout: 600_000 }, () => {
  const h = new Harness();
  let repo = '';
  let full = '';
  let mounted = false;
  before(async () => {
    await h.startUp();
    const dir = h.track(tempDir('app-fault'));
    await writeNativeApp(dir, 'faulty');
    repo = h.track(await makeRepo(dir));
    if (isRoot) {
      full = h.track(tempDir('full-cache'));
      mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', full]).status === 0;
    }
  });
  after(async () => {
    if (mounted) spawnSync('umount', [full]);
    await h.cleanup();
  });

  it(
    'a full disk under the build cache: the deploy succeeds, the log says the entry was not saved',
    { skip: !isRoot && 'needs root (tmpfs mount)' },
    async (t) => {
      if (!mounted) return t.skip('mount -t tmpfs failed');
      // Fill it up so that even small writes fail, except what npm may squeeze in.
      mkdirSync(join(full, 'faulty'), { recursive: true });
      writeFileSync(join(full, 'filler'), Buffer.alloc(200 * 1024));
      const r = await h.cli(['run', repo], { env: { PILOT_BUILD_CACHE: full } });
      const out = r.stdout + r.stderr;
      assert.equal(r.code, 0, out);
      assert.match(out, /build cache: (not saved|cannot restore|not used) \(.*(ENOSPC|no space left)/i);
      const res = await h.viaRouter('faulty.localhost');
      assert.equal(res.status, 200, res.text);
      assert.equal((JSON.parse(res.text) as { hello: string }).hello, 'hello from C');
    },
  );

  it('pilot run killed with -9 during the install: nothing half-saved, the next run installs and saves', async () => {
    const cache = h.track(tempDir('kill-cache'));
    writeFileSync(join(repo, 'server.js'), SERVER_JS('killed'));
    await git(repo, 'commit', '-qam', 'before the kill');
    const p = spawn(process.execPath, [PILOT, 'run', repo], {
      cwd: ROOT,
      env: h.env({ PILOT_BUILD_CACHE: cache }),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor('the install to start', () => out.includes('--> install') || undefined, 120_000);
    } finally {
      // pilot run's group, and the groups of the commands it started (each runs in its own).
      for (const pid of [p.pid!, ...childrenOf(p.pid!)]) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    await new Promise((r) => p.once('close', r));
    const entries = join(cache, 'faulty', 'entries');
    assert.deepEqual(readdirSafe(entries), [], 'no entry from a killed run');
    // The run is left running on the server; `pilot run` again deploys the same commit.
    const r = await h.cli(['run', repo], { env: { PILOT_BUILD_CACHE: cache } });
    const again = r.stdout + r.stderr;
    assert.equal(r.code, 0, again);
    assert.match(again, /build cache: miss/);
    assert.match(again, /build cache: saved/);
    assert.equal(readdirSafe(entries).length, 1);
    assert.equal((JSON.parse((await h.viaRouter('faulty.localhost')).text) as { version: string }).version, 'killed');
  });
});

/** Pids whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSafe('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
