import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isPilotError } from '../core/errors.js';
import { examplePush, exampleTagPush } from './github-examples.fixture.js';
import { MAX_MESSAGE_CHARS, parsePush } from './github-push.js';

const SHA = 'b'.repeat(40);

function refused(payload: unknown, message: RegExp): void {
  assert.throws(
    () => parsePush(payload),
    (e: unknown) => isPilotError(e) && e.code === 'bad_request' && message.test(e.message),
  );
}

describe('github push', () => {
  it("turns GitHub's example branch push into a deploy of `after` on that branch", () => {
    const d = parsePush(examplePush({ after: SHA }));
    assert.equal(d.kind, 'deploy');
    if (d.kind !== 'deploy') return;
    assert.equal(d.branch, 'master');
    assert.equal(d.commit, SHA);
    assert.equal(d.author, 'Codertocat');
    assert.equal(typeof d.message, 'string');
    assert.equal(d.repository.full_name, 'Codertocat/Hello-World');
  });

  it('names the field at fault in shape errors', () => {
    refused(null, /must be a JSON object/);
    refused([], /must be a JSON object/);
    refused(examplePush({ ref: 123 }), /^ref must be a string$/);
    refused(examplePush({ repository: null }), /^repository must be an object/);
    refused(examplePush({ repository: 'acme/shop' }), /^repository must be an object/);
    refused(examplePush({ after: 'main' }), /^after must be/);
    refused(examplePush({ after: SHA.toUpperCase() }), /^after must be/);
    refused(examplePush({ after: SHA, head_commit: 'x' }), /^head_commit must be/);
    refused(examplePush({ after: SHA, ref: 'refs/heads/a\u001b[2Jb' }), /not a valid git ref/);
    refused(examplePush({ after: SHA, ref: `refs/heads/${'a'.repeat(250)}` }), /not a valid git ref/);
  });

  it('ignores tag pushes, branch deletions and refs that are not branches, with the reason', () => {
    assert.deepEqual(pick(parsePush(exampleTagPush())), { kind: 'ignore', reason: 'tag push "simple-tag"' });
    assert.deepEqual(pick(parsePush(examplePush({ deleted: true, after: '0'.repeat(40), head_commit: null }))), {
      kind: 'ignore',
      reason: 'branch "master" deleted',
    });
    // `after` all zeros is a deletion even when `deleted` is missing (other forges, older payloads).
    const { deleted: _d, ...noDeletedFlag } = examplePush({ after: '0'.repeat(40) });
    assert.deepEqual(pick(parsePush(noDeletedFlag)), { kind: 'ignore', reason: 'branch "master" deleted' });
    assert.deepEqual(pick(parsePush(examplePush({ after: SHA, ref: 'refs/pull/1/head' }))), {
      kind: 'ignore',
      reason: 'ref "refs/pull/1/head" is not a branch',
    });
    assert.deepEqual(pick(parsePush(examplePush({ after: SHA, ref: 'refs/heads/' }))), {
      kind: 'ignore',
      reason: 'ref "refs/heads/" is not a branch',
    });
  });

  it('keeps hostile-looking branch names exactly, as data', () => {
    for (const branch of ['$(touch /tmp/x)', '--upload-pack=touch /tmp/x', 'zzz";echo${IFS}hi;#', 'feature/ünïcode']) {
      const d = parsePush(examplePush({ after: SHA, ref: `refs/heads/${branch}` }));
      assert.equal(d.kind === 'deploy' && d.branch, branch);
    }
  });

  it('keeps the first line of the message, escaped and capped, and a showable author', () => {
    const line = '\u001b[31mred\u001b[0m '.repeat(80_000); // ~1.2 MB of ANSI-coloured text
    const head = {
      ...(examplePush().head_commit as object),
      message: `${line}\nsecond line`,
      author: { name: 'Eve\u001b]0;pwned\u0007', email: 'e@x' },
    };
    const d = parsePush(examplePush({ after: SHA, head_commit: head }));
    assert.equal(d.kind, 'deploy');
    if (d.kind !== 'deploy') return;
    assert.ok(d.message.length < MAX_MESSAGE_CHARS + 50, `message is ${d.message.length} characters`);
    assert.ok(d.message.startsWith('\\x1b[31mred\\x1b[0m '));
    assert.match(d.message, /… \(\d+ more characters\)$/);
    assert.doesNotMatch(d.message + d.author, /[\u0000-\u001f]/);
    assert.equal(d.author, 'Eve\\x1b]0;pwned\\x07');
  });

  it('falls back to the pusher when the head commit has no author, and to empty strings', () => {
    const d = parsePush(examplePush({ after: SHA, head_commit: null, pusher: { name: 'octo' } }));
    assert.deepEqual(d.kind === 'deploy' && [d.message, d.author], ['', 'octo']);
    const e = parsePush(examplePush({ after: SHA, head_commit: { message: 42 }, pusher: null }));
    assert.deepEqual(e.kind === 'deploy' && [e.message, e.author], ['', '']);
  });
});

function pick(d: ReturnType<typeof parsePush>): { kind: string; reason?: string } {
  return d.kind === 'ignore' ? { kind: d.kind, reason: d.reason } : { kind: d.kind };
}
