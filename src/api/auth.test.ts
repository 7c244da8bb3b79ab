import { describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { bearer, tokensEqual } from './auth.js';
import { signGithubPayload, verifyGithubSignature } from '../cd/github-signature.js';

/**
 * Run `fn` with node:crypto's timingSafeEqual replaced by a counting wrapper. syncBuiltinESMExports
 * makes the named ESM import in the modules under test see the wrapper too.
 */
function countingTimingSafeEqual<T>(fn: () => T): { result: T; calls: number } {
  const spy = mock.method(crypto, 'timingSafeEqual');
  syncBuiltinESMExports();
  try {
    return { result: fn(), calls: spy.mock.callCount() };
  } finally {
    spy.mock.restore();
    syncBuiltinESMExports();
  }
}

describe('secret comparisons are constant-time', () => {
  it('tokensEqual answers through timingSafeEqual, for equal and unequal tokens of any length', () => {
    for (const [a, b, equal] of [
      ['pilot_abc', 'pilot_abc', true],
      ['pilot_abc', 'pilot_abd', false],
      ['short', 'a-much-longer-token', false],
    ] as const) {
      const { result, calls } = countingTimingSafeEqual(() => tokensEqual(a, b));
      assert.equal(result, equal);
      assert.equal(calls, 1, `${a} vs ${b}`);
    }
  });

  it('a GitHub signature is checked through timingSafeEqual', () => {
    const body = Buffer.from('{"ref":"refs/heads/main"}');
    const good = countingTimingSafeEqual(() =>
      verifyGithubSignature('s3cret-s3cret-16', body, signGithubPayload('s3cret-s3cret-16', body)),
    );
    assert.deepEqual(good, { result: true, calls: 1 });
    const bad = countingTimingSafeEqual(() => verifyGithubSignature('s3cret-s3cret-16', body, signGithubPayload('other-secret-000', body)));
    assert.deepEqual(bad, { result: false, calls: 1 });
  });

  it('reads only a well-formed bearer header', () => {
    assert.equal(bearer('Bearer abc'), 'abc');
    assert.equal(bearer('bearer abc '), 'abc');
    assert.equal(bearer('Basic abc'), undefined);
    assert.equal(bearer('Bearer a b'), undefined);
    assert.equal(bearer('XBearer abc'), undefined, 'anchored at the start');
    assert.equal(bearer('Bearerabc'), undefined, 'a space after the scheme');
    assert.equal(bearer('Bearer  abc'), 'abc', 'any run of spaces');
    assert.equal(bearer(''), undefined);
    assert.equal(bearer(undefined), undefined);
  });
});
