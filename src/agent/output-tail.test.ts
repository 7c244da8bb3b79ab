import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lastLines, outputTail } from './output-tail.js';

describe('output tail', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-tail-'));
  const files = { stdout: join(dir, 'stdout.log'), stderr: join(dir, 'stderr.log') };

  it('gives the last lines of stdout then stderr, stderr last', async () => {
    writeFileSync(files.stdout, Array.from({ length: 30 }, (_, i) => `out ${i}`).join('\n') + '\n');
    writeFileSync(files.stderr, 'FATAL: DATABASE_URL is not set\n');
    const tail = (await outputTail(files, 5))!.split('\n');
    assert.deepEqual(tail, ['out 26', 'out 27', 'out 28', 'out 29', 'FATAL: DATABASE_URL is not set']);
  });

  it('is undefined without output, and tolerates missing files', async () => {
    assert.equal(await outputTail({ stdout: join(dir, 'none-1'), stderr: join(dir, 'none-2') }), undefined);
  });

  it('escapes terminal control sequences, cuts long lines and CRLF', async () => {
    writeFileSync(files.stdout, '');
    writeFileSync(files.stderr, `\u001b[31mred\u001b[0m\r\n${'x'.repeat(1000)}\n`);
    const [first, second] = (await outputTail(files))!.split('\n');
    assert.equal(first, '\\x1b[31mred\\x1b[0m');
    assert.ok(second!.length < 400 && second!.includes('more characters'));
  });

  it('reads only the end of a big file and drops the cut first line', async () => {
    writeFileSync(files.stdout, 'y'.repeat(200_000) + '\nlast\n');
    assert.deepEqual(await lastLines(files.stdout, 3), ['last']);
    rmSync(dir, { recursive: true, force: true });
  });
});
