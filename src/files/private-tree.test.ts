import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { guardEntries, makePrivate } from './private-tree.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pilot-private-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const mode = (p: string): number => statSync(p).mode & 0o7777;

void describe('makePrivate', () => {
  void it('fixes a home made world-readable: files 0600 (0700 executable), folders 0700, the root keeps only its search bit', async (t) => {
    const home = await tempDir(t);
    chmodSync(home, 0o755);
    writeFileSync(join(home, 'pilot.db'), '', { mode: 0o644 });
    mkdirSync(join(home, 'artifacts', 'sha256'), { recursive: true, mode: 0o755 });
    writeFileSync(join(home, 'artifacts', 'sha256', 'blob'), '', { mode: 0o444 });
    writeFileSync(join(home, 'tool'), '', { mode: 0o755 });
    mkdirSync(join(home, 'agent', 'shared'), { recursive: true, mode: 0o755 });
    writeFileSync(join(home, 'agent', 'shared', 'public.js'), '', { mode: 0o644 });
    makePrivate(home, new Set([join(home, 'agent', 'shared')]));
    assert.equal(mode(home), 0o711);
    assert.equal(mode(join(home, 'pilot.db')), 0o600);
    assert.equal(mode(join(home, 'artifacts')), 0o700);
    assert.equal(mode(join(home, 'artifacts', 'sha256')), 0o700);
    assert.equal(mode(join(home, 'artifacts', 'sha256', 'blob')), 0o400);
    assert.equal(mode(join(home, 'tool')), 0o700);
    assert.equal(mode(join(home, 'agent')), 0o700);
    assert.equal(mode(join(home, 'agent', 'shared')), 0o711, 'a kept folder keeps its search bit, not its read bit');
    assert.equal(mode(join(home, 'agent', 'shared', 'public.js')), 0o644, 'inside a kept folder: left to its owner');
  });

  void it('a 0700 root stays 0700', async (t) => {
    const home = await tempDir(t);
    chmodSync(home, 0o700);
    makePrivate(home);
    assert.equal(mode(home), 0o700);
  });
});

void describe('guardEntries', () => {
  void it('strips group/other bits from a folder created later in a guarded folder', async (t) => {
    const home = await tempDir(t);
    const w = guardEntries(home);
    t.after(() => w?.close());
    assert.ok(w, 'inotify available');
    mkdirSync(join(home, 'runs'), { mode: 0o755 });
    const end = Date.now() + 5000;
    while (mode(join(home, 'runs')) !== 0o700 && Date.now() < end) await sleep(10);
    assert.equal(mode(join(home, 'runs')), 0o700);
  });
});
