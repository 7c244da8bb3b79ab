import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keepLogs, listStopped, pruneStopped } from './stopped-logs.js';

describe('kept logs of stopped instances', () => {
  const stop = (home: string, id: string, app: string, stoppedAt: number): void => {
    const stateDir = join(home, 'instances', id);
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(join(stateDir, 'stdout.log'), `${id} says hi\n`);
    writeFileSync(join(stateDir, 'stderr.log.1'), 'rotated\n');
    writeFileSync(join(stateDir, 'instance.json'), '{"secret":"no"}');
    keepLogs(home, stateDir, { id, app, revision: 1, kind: 'web', stoppedAt, lastError: 'exited with code 1' });
  };

  it('moves the log files (rotated ones too), not the instance record', () => {
    const home = mkdtempSync(join(tmpdir(), 'pilot-stopped-'));
    stop(home, 'shop-1-aa', 'shop', 1000);
    const [m] = listStopped(home, 'shop');
    assert.equal(m!.id, 'shop-1-aa');
    assert.equal(readFileSync(join(m!.dir, 'stdout.log'), 'utf8'), 'shop-1-aa says hi\n');
    assert.ok(existsSync(join(m!.dir, 'stderr.log.1')));
    assert.ok(!existsSync(join(m!.dir, 'instance.json')));
    rmSync(home, { recursive: true, force: true });
  });

  it('keeps the newest N per app and drops those older than the age limit', () => {
    const home = mkdtempSync(join(tmpdir(), 'pilot-stopped-'));
    for (let i = 0; i < 7; i++) stop(home, `shop-1-${i}`, 'shop', 1000 + i);
    stop(home, 'blog-1-x', 'blog', 10);
    assert.equal(pruneStopped(home, 5, 2000), 2);
    assert.deepEqual(
      listStopped(home, 'shop').map((m) => m.id),
      ['shop-1-6', 'shop-1-5', 'shop-1-4', 'shop-1-3', 'shop-1-2'],
    );
    assert.equal(listStopped(home, 'blog').length, 1);
    assert.equal(pruneStopped(home, 5, 2000, 1500), 1); // blog's is older than 1.5 s
    assert.equal(listStopped(home).length, 5);
    rmSync(home, { recursive: true, force: true });
  });
});
