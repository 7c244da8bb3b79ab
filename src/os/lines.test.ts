import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LineSplitter, Tail } from './lines.js';

function split(chunks: readonly string[], max?: number): string[] {
  const out: string[] = [];
  const s = new LineSplitter((l) => out.push(l), max);
  for (const c of chunks) s.push(c);
  s.end();
  return out;
}

/** Cut `text` at the given offsets. */
function chunk(text: string, cuts: readonly number[]): string[] {
  const at = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
  return [0, ...at].map((from, i) => text.slice(from, at[i] ?? text.length));
}

describe('LineSplitter', () => {
  it('joins partial lines and drops the CR of CRLF even when split between chunks', () => {
    assert.deepEqual(split(['a', 'b\r', '\nc\r\n', 'd']), ['ab', 'c', 'd']);
    assert.deepEqual(split(['\n\n']), ['', '']);
    assert.deepEqual(split(['progress 10%\rprogress 20%\n']), ['progress 10%\rprogress 20%']);
    assert.deepEqual(split([]), []);
  });

  it('cuts a long line, counting what it dropped, and carries on with the next', () => {
    assert.deepEqual(split(['abcdefgh', 'ij\nnext\n'], 4), ['abcd [… 6 more characters cut]', 'next']);
  });

  it('gives the same lines however the text is chunked (property)', () => {
    const text = fc.string({ unit: fc.constantFrom('a', 'é', '\n', '\r', ' ') });
    fc.assert(
      fc.property(text, fc.array(fc.nat()), (t, cuts) => {
        const expected = t.split('\n').map((l) => l.replace(/\r$/, ''));
        if (t === '' || t.endsWith('\n')) expected.pop();
        assert.deepEqual(split(chunk(t, cuts)), expected);
      }),
    );
  });
});

describe('Tail', () => {
  it('keeps the last lines, oldest first', () => {
    const t = new Tail(2);
    for (const l of ['a', 'b', 'c']) t.push(l);
    assert.deepEqual(t.toArray(), ['b', 'c']);
    const none = new Tail(0);
    none.push('a');
    assert.deepEqual(none.toArray(), []);
  });
});
