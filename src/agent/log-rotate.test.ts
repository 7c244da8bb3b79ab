import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rotateIfNeeded } from './log-rotate.js';

async function tempLog(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pilot-rotate-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'stdout.log');
}

const read = (f: string): string => readFileSync(f, 'utf8');

void describe('rotateIfNeeded', () => {
  void it('does nothing for a missing file or one within maxBytes', async (t) => {
    const file = await tempLog(t);
    assert.equal(await rotateIfNeeded(file, 10, 2), false);
    writeFileSync(file, '0123456789');
    assert.equal(await rotateIfNeeded(file, 10, 2), false);
    assert.equal(read(file), '0123456789');
    assert.equal(existsSync(`${file}.1`), false);
  });

  void it('moves the content to file.1 and empties the file', async (t) => {
    const file = await tempLog(t);
    writeFileSync(file, 'line one\nline two\n');
    assert.equal(await rotateIfNeeded(file, 10, 2), true);
    assert.equal(read(file), '');
    assert.equal(read(`${file}.1`), 'line one\nline two\n');
  });

  void it('shifts file.1 → file.2 and keeps at most `keep` old copies', async (t) => {
    const file = await tempLog(t);
    for (const gen of ['first', 'second', 'third', 'fourth']) {
      writeFileSync(file, `${gen} generation\n`);
      assert.equal(await rotateIfNeeded(file, 5, 2), true);
    }
    assert.equal(read(`${file}.1`), 'fourth generation\n');
    assert.equal(read(`${file}.2`), 'third generation\n');
    assert.equal(existsSync(`${file}.3`), false);
  });

  void it('with keep 0 only truncates', async (t) => {
    const file = await tempLog(t);
    writeFileSync(file, 'x'.repeat(100));
    assert.equal(await rotateIfNeeded(file, 10, 0), true);
    assert.equal(read(file), '');
    assert.equal(existsSync(`${file}.1`), false);
  });

  void it('lets a writer holding the file open with O_APPEND go on at offset 0, without a hole', async (t) => {
    const file = await tempLog(t);
    const fd = openSync(file, 'a');
    t.after(() => closeSync(fd));
    writeSync(fd, 'before\n'.repeat(20));
    assert.equal(await rotateIfNeeded(file, 50, 1), true);
    writeSync(fd, 'after\n');
    assert.equal(read(file), 'after\n');
    assert.equal(read(`${file}.1`), 'before\n'.repeat(20));
  });

  void it('rejects a negative keep', async (t) => {
    const file = await tempLog(t);
    await assert.rejects(rotateIfNeeded(file, 10, -1), RangeError);
  });
});
