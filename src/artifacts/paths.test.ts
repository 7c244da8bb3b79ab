import { posix } from 'node:path';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { linkTargetProblem, splitArchivePath } from './paths.js';

const limits = { maxDepth: 64, maxPathLength: 4096 };

describe('splitArchivePath', () => {
  it('drops empty and "." components', () => {
    assert.deepEqual(splitArchivePath('./a//b/./c/', limits), { parts: ['a', 'b', 'c'] });
    assert.deepEqual(splitArchivePath('./', limits), { parts: [] });
  });

  it('says why a path may not be written', () => {
    assert.deepEqual(splitArchivePath('/etc/passwd', limits), { problem: 'absolute path' });
    assert.deepEqual(splitArchivePath('a/../../b', limits), { problem: '".." component in path' });
    assert.deepEqual(splitArchivePath('a\0b', limits), { problem: 'NUL byte in path' });
    assert.deepEqual(splitArchivePath('a/b/c', { maxDepth: 2, maxPathLength: 100 }), { problem: 'path deeper than 2 levels' });
    assert.deepEqual(splitArchivePath('abcdef', { maxDepth: 2, maxPathLength: 5 }), { problem: 'path longer than 5 characters' });
  });

  it('never admits a path that resolves outside the root', () => {
    const segment = fc.constantFrom('a', 'b', '..', '.', '', 'c.txt');
    fc.assert(
      fc.property(fc.array(segment, { maxLength: 8 }), fc.boolean(), (segs, abs) => {
        const p = (abs ? '/' : '') + segs.join('/');
        const r = splitArchivePath(p, limits);
        if ('parts' in r) assert.ok(posix.resolve('/root', ...r.parts).startsWith('/root'));
      }),
    );
  });
});

describe('linkTargetProblem', () => {
  it('accepts the targets npm writes', () => {
    assert.equal(linkTargetProblem(['node_modules', '.bin', 'tsc'], '../typescript/bin/tsc'), undefined);
    assert.equal(linkTargetProblem(['node_modules', '.pnpm', 'x', 'node_modules', 'y'], '../../y@1/node_modules/y'), undefined);
    assert.equal(linkTargetProblem(['current'], 'releases/3'), undefined);
  });

  it('refuses targets that leave the tree or could through another link', () => {
    assert.equal(linkTargetProblem(['a'], '../x'), 'link target resolves outside the tree');
    assert.equal(linkTargetProblem(['a', 'b'], '/etc'), 'absolute link target');
    assert.equal(linkTargetProblem(['a', 'b'], 'c/../../x'), '".." after a name in link target');
    assert.equal(linkTargetProblem(['a'], ''), 'empty link target');
  });

  it('admits only targets that resolve inside the root, for any link position', () => {
    const segment = fc.constantFrom('a', 'b', '..', '.', '');
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('x', 'y', 'z'), { minLength: 1, maxLength: 5 }),
        fc.array(segment, { minLength: 1, maxLength: 8 }),
        (link, segs) => {
          const target = segs.join('/');
          if (linkTargetProblem(link, target) === undefined) {
            assert.ok(posix.resolve('/root', ...link.slice(0, -1), target).startsWith('/root'));
          }
        },
      ),
    );
  });
});
