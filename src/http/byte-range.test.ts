import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { matchesEtag, parseByteRange } from './byte-range.js';

describe('parseByteRange', () => {
  it('serves everything without a header, for another unit, several ranges or garbage', () => {
    for (const h of [
      undefined,
      '',
      'items=0-1',
      'bytes=0-1,3-4',
      'bytes=abc',
      'bytes=-',
      'bytes=5-2',
      'bytes=1-2-3',
      `bytes=${'9'.repeat(20)}-`,
    ])
      assert.deepEqual(parseByteRange(h, 100), { kind: 'all' }, String(h));
  });
  it('reads first-last, open-ended and suffix ranges, clamped to the size', () => {
    assert.deepEqual(parseByteRange('bytes=0-0', 100), { kind: 'part', start: 0, end: 0 });
    assert.deepEqual(parseByteRange('bytes=10-19', 100), { kind: 'part', start: 10, end: 19 });
    assert.deepEqual(parseByteRange('bytes=90-', 100), { kind: 'part', start: 90, end: 99 });
    assert.deepEqual(parseByteRange('bytes=90-1000', 100), { kind: 'part', start: 90, end: 99 });
    assert.deepEqual(parseByteRange('bytes=-10', 100), { kind: 'part', start: 90, end: 99 });
    assert.deepEqual(parseByteRange('bytes=-1000', 100), { kind: 'part', start: 0, end: 99 });
    assert.deepEqual(parseByteRange(' bytes=99-99 ', 100), { kind: 'part', start: 99, end: 99 });
  });
  it('refuses a range that starts at or past the end, and any range of an empty file', () => {
    assert.deepEqual(parseByteRange('bytes=100-', 100), { kind: 'unsatisfiable' });
    assert.deepEqual(parseByteRange('bytes=100-200', 100), { kind: 'unsatisfiable' });
    assert.deepEqual(parseByteRange('bytes=-0', 100), { kind: 'unsatisfiable' });
    assert.deepEqual(parseByteRange('bytes=0-', 0), { kind: 'unsatisfiable' });
    assert.deepEqual(parseByteRange('bytes=-5', 0), { kind: 'unsatisfiable' });
  });
});

describe('matchesEtag', () => {
  it('matches the tag, its weak form, * and lists; nothing else', () => {
    assert.equal(matchesEtag('"a"', '"a"'), true);
    assert.equal(matchesEtag('W/"a"', '"a"'), true);
    assert.equal(matchesEtag('"b", "a"', '"a"'), true);
    assert.equal(matchesEtag('*', '"a"'), true);
    assert.equal(matchesEtag(undefined, '"a"'), false);
    assert.equal(matchesEtag('"ab"', '"a"'), false);
    assert.equal(matchesEtag('a', '"a"'), false);
  });
});
