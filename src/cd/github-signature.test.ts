import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { signGithubPayload, verifyGithubSignature } from './github-signature.js';

const SECRET = "It's a Secret to Everybody";
const BODY = Buffer.from('Hello, World!');

describe('github signature', () => {
  it("matches GitHub's documented example (secret, body, signature)", () => {
    // From docs.github.com "Validating webhook deliveries": the test values GitHub publishes.
    const expected = 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';
    assert.equal(signGithubPayload(SECRET, BODY), expected);
    assert.equal(verifyGithubSignature(SECRET, BODY, expected), true);
  });

  it('works on raw bytes, including bytes that are not valid UTF-8', () => {
    const body = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
    const sig = signGithubPayload(SECRET, body);
    assert.equal(verifyGithubSignature(SECRET, body, sig), true);
    // Decoding to a string and back (what a string-based API does) changes the bytes and the MAC.
    assert.equal(verifyGithubSignature(SECRET, Buffer.from(body.toString('utf8')), sig), false);
  });

  it('refuses a missing, malformed, upper-case, truncated or other-algorithm header', () => {
    const good = signGithubPayload(SECRET, BODY);
    const hex = good.slice(7);
    const sha1 = `sha1=${createHmac('sha1', SECRET).update(BODY).digest('hex')}`;
    for (const bad of [
      undefined,
      '',
      hex,
      sha1,
      `sha256=${hex.toUpperCase()}`,
      `SHA256=${hex}`,
      `sha256=${hex.slice(0, 63)}`,
      `sha256=${hex}0`,
      `sha256=${hex} `,
      ` ${good}`,
      `sha256=${'z'.repeat(64)}`,
      `sha512=${hex}`,
    ]) {
      assert.equal(verifyGithubSignature(SECRET, BODY, bad), false, String(bad));
    }
  });

  it('refuses another body, another secret, and an empty secret', () => {
    const sig = signGithubPayload(SECRET, BODY);
    assert.equal(verifyGithubSignature(SECRET, Buffer.from('Hello, World?'), sig), false);
    assert.equal(verifyGithubSignature('another secret', BODY, sig), false);
    assert.equal(verifyGithubSignature('', BODY, signGithubPayload('', BODY)), false);
  });
});

describe('GitHub signature edge cases (mutation survivors)', () => {
  const body = Buffer.from('{"zen":"x"}');
  const good = signGithubPayload('a-secret-of-16ch', body);
  it('refuses a valid signature with anything before sha256=, and an empty secret even when the header matches', () => {
    assert.equal(verifyGithubSignature('a-secret-of-16ch', body, good), true);
    assert.equal(verifyGithubSignature('a-secret-of-16ch', body, `x${good}`), false);
    assert.equal(verifyGithubSignature('', body, signGithubPayload('', body)), false);
    assert.equal(verifyGithubSignature('a-secret-of-16ch', body, undefined), false);
  });
  it('refuses a well-formed signature of other bytes', () => {
    assert.equal(verifyGithubSignature('a-secret-of-16ch', Buffer.from('{"zen":"y"}'), good), false);
  });
});
