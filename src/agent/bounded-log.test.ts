import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BoundedLog } from './bounded-log.js';

async function tempLog(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pilot-bounded-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'stdout.log');
}

const size = (f: string): number => (existsSync(f) ? statSync(f).size : 0);

void describe('BoundedLog', () => {
  void it('rotates before a write that would pass maxBytes: no file ever larger, nothing lost among the kept files', async (t) => {
    const file = await tempLog(t);
    const log = new BoundedLog(file, 100, 2);
    let all = '';
    for (let i = 0; i < 40; i++) {
      const line = `line ${i}\n`;
      log.write(Buffer.from(line));
      all += line;
      for (const f of [file, `${file}.1`, `${file}.2`]) assert.ok(size(f) <= 100, `${f} ${size(f)} bytes after write ${i}`);
    }
    log.close();
    assert.equal(existsSync(`${file}.3`), false);
    const kept = [`${file}.2`, `${file}.1`, file].map((f) => readFileSync(f, 'utf8')).join('');
    assert.ok(all.endsWith(kept), 'the kept files are the newest bytes, in order, without a gap');
    assert.ok(kept.length > 200);
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  void it('keeps the tail of a single chunk larger than maxBytes', async (t) => {
    const file = await tempLog(t);
    const log = new BoundedLog(file, 10, 1);
    log.write(Buffer.from('0123456789abcdefghij'));
    log.close();
    assert.equal(readFileSync(file, 'utf8'), 'abcdefghij');
  });

  void it('keep = 0 starts the file again, and a new writer continues an existing file at its size', async (t) => {
    const file = await tempLog(t);
    const a = new BoundedLog(file, 10, 0);
    a.write(Buffer.from('12345678'));
    a.close();
    const b = new BoundedLog(file, 10, 0);
    b.write(Buffer.from('9'));
    assert.equal(readFileSync(file, 'utf8'), '123456789', 'appended, not truncated');
    b.write(Buffer.from('abc'));
    b.close();
    assert.equal(readFileSync(file, 'utf8'), 'abc');
    assert.equal(existsSync(`${file}.1`), false);
  });

  void it('counts a write the file system refuses and writes again once it can', async (t) => {
    const file = await tempLog(t);
    const log = new BoundedLog(join(file, 'no-such-dir', 'x.log'), 10, 1);
    log.write(Buffer.from('lost'));
    assert.equal(log.dropped, 1);
    log.close();
  });

  void it('refuses nonsense bounds', () => {
    assert.throws(() => new BoundedLog('/x', 0, 1), RangeError);
    assert.throws(() => new BoundedLog('/x', 10, -1), RangeError);
  });
});
