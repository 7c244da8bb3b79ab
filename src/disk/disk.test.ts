import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { CATALOGUE } from '../core/errors.js';
import { toPilotError } from '../control/http-errors.js';
import { diskFullError, diskLowThreshold, diskStatus, isDiskFull } from './disk.js';

const fsError = (code: string, path?: string): NodeJS.ErrnoException =>
  Object.assign(new Error(`${code}: no space left on device, write`), { code, ...(path ? { path } : {}) });

describe('disk full', () => {
  it('recognises ENOSPC, EDQUOT and SQLITE_FULL, nothing else', () => {
    for (const c of ['ENOSPC', 'EDQUOT', 'SQLITE_FULL']) assert.ok(isDiskFull(fsError(c)), c);
    for (const c of ['EIO', 'ENOENT', 'SQLITE_BUSY']) assert.ok(!isDiskFull(fsError(c)), c);
    assert.ok(!isDiskFull(new Error('no code')));
    assert.ok(!isDiskFull(undefined));
  });

  it('is a 507 naming the full filesystem, the free space and what was needed; never "a bug in Pilot"', () => {
    const e = diskFullError(
      fsError('ENOSPC', `${tmpdir()}/pilot-x/part`),
      'cannot store artifact sha256:ab',
      '/fallback',
      50 * 1024 * 1024,
    );
    assert.equal(e.code, 'disk_full');
    assert.equal(CATALOGUE[e.code].status, 507);
    assert.equal(e.retryable, true);
    assert.match(
      e.message,
      new RegExp(
        `^cannot store artifact sha256:ab: the filesystem holding ${tmpdir()}/pilot-x/part is full \\(ENOSPC, \\d+ (MiB|bytes) free\\); it needs 50 MiB$`,
      ),
    );
    assert.doesNotMatch(e.hint ?? '', /bug/);
    assert.equal((e.details as { neededBytes: number }).neededBytes, 50 * 1024 * 1024);
    const quota = diskFullError(fsError('EDQUOT'), 'cannot write', '/var/lib/pilot-nonexistent/x');
    assert.match(
      quota.message,
      /the disk quota holding \/var\/lib\/pilot-nonexistent\/x is full \(EDQUOT, \d+/,
      'free space of the nearest existing parent',
    );
  });

  it('the HTTP edge maps a raw ENOSPC or SQLITE_FULL to disk_full, not internal', () => {
    assert.equal(toPilotError(fsError('ENOSPC', '/home/p/runs/3.log')).code, 'disk_full');
    assert.match(
      toPilotError(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }), '/home/p').message,
      /holding \/home\/p is full \(SQLITE_FULL/,
    );
    assert.equal(toPilotError(new Error('boom')).code, 'internal');
  });

  it('measures free space and the low threshold (PILOT_DISK_LOW_BYTES, default 512 MiB)', async () => {
    assert.equal(diskLowThreshold({}), 512 * 1024 * 1024);
    assert.equal(diskLowThreshold({ PILOT_DISK_LOW_BYTES: '1000' }), 1000);
    assert.equal(diskLowThreshold({ PILOT_DISK_LOW_BYTES: 'lots' }), 512 * 1024 * 1024);
    const s = await diskStatus(tmpdir(), 0);
    assert.ok(s && s.freeBytes > 0 && s.totalBytes >= s.freeBytes && s.low === false);
    assert.equal((await diskStatus(tmpdir(), Number.MAX_SAFE_INTEGER))?.low, true);
    assert.equal(await diskStatus('/nonexistent/pilot'), undefined);
  });
});
