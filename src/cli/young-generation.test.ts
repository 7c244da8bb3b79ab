import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

const MODULE = new URL('./young-generation.js', import.meta.url).href;

/**
 * The size in MB of V8's new space in a fresh node after allocation churn that makes an unbounded
 * new space grow, with `smallYoungGeneration` called first or not, and these node flags.
 */
function newSpaceAfterChurn(call: boolean, nodeFlags: string[] = []): number {
  const script = `
    const v8 = await import('node:v8');
    ${call ? `(await import(${JSON.stringify(MODULE)})).smallYoungGeneration();` : ''}
    const keep = [];
    for (let i = 0; i < 300000; i++) { keep.push({ a: i, b: 'x' + i }); if (keep.length > 8000) keep.splice(0, 4000); }
    const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');
    process.stdout.write(String(s.space_size / 2 ** 20));`;
  return Number(execFileSync(process.execPath, [...nodeFlags, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 }));
}

describe('young generation of long-running processes', () => {
  it('holds the new space at its initial 2 x 1 MB under churn that grows it otherwise', () => {
    const unbounded = newSpaceAfterChurn(false);
    assert.ok(unbounded > 2, `without the flag the new space grows (${unbounded} MB): the churn is enough to tell`);
    assert.equal(newSpaceAfterChurn(true), 2);
  });

  it('leaves a young generation sized on the node command line alone', () => {
    assert.equal(newSpaceAfterChurn(true, ['--max-semi-space-size=2']), 4);
  });
});
