import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { LogDestination } from './log-destination.js';
import { isRequestScoped } from './process-guard.js';

describe('log destination', () => {
  it('appends whole lines to a file, in order', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pilot-logdest-'));
    try {
      const dest = new LogDestination(join(dir, 'logs', 'pilot.log'));
      const log = pino({ base: null }, dest);
      for (let i = 0; i < 500; i++) log.info({ i }, 'line');
      await sleep(200);
      dest.end();
      const lines = readFileSync(join(dir, 'logs', 'pilot.log'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { i: number });
      assert.deepEqual(
        lines.map((l) => l.i),
        Array.from({ length: 500 }, (_, i) => i),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('on a full disk (/dev/full: every write is ENOSPC) never throws, never blocks, and counts what it drops', async () => {
    const dest = new LogDestination('/dev/full');
    const log = pino({}, dest);
    const started = performance.now();
    for (let i = 0; i < 10_000; i++) log.info({ i }, 'a line that cannot be written');
    await sleep(100);
    for (let i = 0; i < 100; i++) log.warn('more');
    // The event loop kept turning (this timer ran), and nothing was thrown or emitted.
    assert.equal(dest.stats.failing, 'ENOSPC');
    assert.equal(dest.stats.dropped, 10_100);
    assert.ok(performance.now() - started < 30_000);
    dest.flushSync(); // at exit: one attempt, no loop
    dest.end();
  });

  it('says how many lines were dropped once writing works again', async () => {
    let full = true;
    const written: string[] = [];
    // A test double for fs.write: ENOSPC while `full`, then success.
    const fakeWrite = ((
      _fd: number,
      buf: Buffer,
      off: number,
      len: number,
      _pos: null,
      cb: (err: NodeJS.ErrnoException | null, n: number) => void,
    ) => {
      setImmediate(() => {
        if (full) return cb(Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }), 0);
        written.push(buf.subarray(off, off + len).toString());
        cb(null, len);
      });
    }) as unknown as typeof import('node:fs').write;
    const dest = new LogDestination(99, Date.now, fakeWrite);
    const log = pino({}, dest);
    log.info('lost 1');
    await sleep(20);
    log.info('lost 2');
    log.info('lost 3');
    assert.equal(dest.stats.failing, 'ENOSPC');
    full = false;
    await sleep(1500); // the retry after RETRY_MS
    log.info('back');
    await sleep(50);
    assert.equal(dest.stats.failing, undefined);
    const text = written.join('');
    assert.match(text, /"msg":"log lines dropped: 3 between .* and now \(ENOSPC: the disk was full or failing\)"/);
    assert.match(text, /"msg":"back"/);
    assert.doesNotMatch(text, /lost/);
    dest.end();
  });
});

describe('process guard', () => {
  it('tells request-scoped failures (a client or peer went away, a full disk) from bugs', () => {
    const e = (code: string): Error => Object.assign(new Error(code), { code });
    for (const c of ['ECONNRESET', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET', 'ABORT_ERR', 'ENOSPC'])
      assert.ok(isRequestScoped(e(c)), c);
    assert.ok(isRequestScoped(Object.assign(new Error('aborted'), { name: 'AbortError' })));
    for (const x of [new TypeError('x is undefined'), e('ERR_INVALID_ARG_TYPE'), 'a string', undefined])
      assert.ok(!isRequestScoped(x), String(x));
  });
});
