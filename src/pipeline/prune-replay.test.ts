import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listTree, readRecord, recordPrune, replayPrune, saveRecord } from './prune-replay.js';

const dirs: string[] = [];
const temp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'pilot-prune-'));
  dirs.push(d);
  return d;
};

/** node_modules as an install leaves it: a runtime dep, a dev dep with a nested dep and a bin link, npm's hidden lockfile. */
function installed(root: string): string {
  const nm = join(root, 'node_modules');
  for (const d of ['express/lib', 'typescript/bin', 'typescript/node_modules/inner', '.bin']) mkdirSync(join(nm, d), { recursive: true });
  writeFileSync(join(nm, 'express/package.json'), '{"name":"express"}');
  writeFileSync(join(nm, 'express/lib/index.js'), 'module.exports = 1;');
  writeFileSync(join(nm, 'typescript/package.json'), '{"name":"typescript"}');
  writeFileSync(join(nm, 'typescript/bin/tsc'), '#!/usr/bin/env node\n');
  writeFileSync(join(nm, 'typescript/node_modules/inner/index.js'), 'x');
  symlinkSync('../typescript/bin/tsc', join(nm, '.bin/tsc'));
  writeFileSync(join(nm, '.package-lock.json'), '{"packages":{"node_modules/express":{},"node_modules/typescript":{"dev":true}}}');
  return nm;
}

/** What npm prune --omit=dev does to that tree. */
function prune(nm: string): void {
  rmSync(join(nm, 'typescript'), { recursive: true });
  rmSync(join(nm, '.bin/tsc'));
  writeFileSync(join(nm, '.package-lock.json'), '{"packages":{"node_modules/express":{}}}');
}

const ARGV = ['npm', 'prune', '--omit=dev'];

describe('prune replay', () => {
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('records a prune and replays it on the same tree, to the same result', async () => {
    const nm = installed(temp());
    const before = await listTree(nm);
    prune(nm);
    const after = await listTree(nm);
    const record = await recordPrune(nm, ARGV, before, after);
    assert.ok(record);
    assert.deepEqual([...record.removed].sort(), ['.bin/tsc', 'typescript']);
    assert.deepEqual(Object.keys(record.written), ['.package-lock.json']);
    const entry = temp();
    await saveRecord(entry, record);
    const loaded = await readRecord(entry);
    assert.deepEqual(loaded, record);

    const other = installed(temp());
    const replayed = await replayPrune(other, loaded!, await listTree(other));
    assert.equal(replayed?.digest, after.digest);
    assert.equal((await listTree(other)).digest, after.digest);
    assert.equal(readFileSync(join(other, '.package-lock.json'), 'utf8'), '{"packages":{"node_modules/express":{}}}');
    assert.equal(existsSync(join(other, 'typescript')), false);
    assert.equal(existsSync(join(other, 'express/lib/index.js')), true);
  });

  it('leaves a tree the build changed untouched (the caller runs the real prune)', async () => {
    const nm = installed(temp());
    const before = await listTree(nm);
    prune(nm);
    const record = (await recordPrune(nm, ARGV, before, await listTree(nm)))!;
    const other = installed(temp());
    writeFileSync(join(other, 'express/lib/generated.js'), 'by the build');
    assert.equal(await replayPrune(other, record, await listTree(other)), undefined);
    assert.equal(existsSync(join(other, 'typescript')), true, 'nothing removed');
  });

  it('refuses a record with paths outside node_modules', async () => {
    const entry = temp();
    for (const bad of [['../../etc'], ['/etc'], ['a/../../b'], ['']]) {
      writeFileSync(
        join(entry, 'prune.json'),
        JSON.stringify({ format: 1, argv: ARGV, before: 'x', after: 'y', removed: bad, written: {} }),
      );
      assert.equal(await readRecord(entry), undefined, JSON.stringify(bad));
    }
    writeFileSync(
      join(entry, 'prune.json'),
      JSON.stringify({ format: 1, argv: ARGV, before: 'x', after: 'y', removed: [], written: { '../escape': { data: '', mode: 420 } } }),
    );
    assert.equal(await readRecord(entry), undefined);
    writeFileSync(join(entry, 'prune.json'), 'not json');
    assert.equal(await readRecord(entry), undefined);
  });

  it('does not record a prune that made links or folders, or wrote too much', async () => {
    const nm = installed(temp());
    const before = await listTree(nm);
    mkdirSync(join(nm, 'new-folder'));
    assert.equal(await recordPrune(nm, ARGV, before, await listTree(nm)), undefined);
    rmSync(join(nm, 'new-folder'), { recursive: true });
    writeFileSync(join(nm, 'big.bin'), Buffer.alloc(5 * 1024 * 1024));
    assert.equal(await recordPrune(nm, ARGV, before, await listTree(nm)), undefined);
  });
});
