import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sanitizeLine, secretMasker } from './mask.js';

describe('secret masking', () => {
  const secret = 'sk_live_abc?>~123';
  const mask = secretMasker([secret, 'ab']);

  it('hides the plain value wherever it appears', () => {
    assert.equal(mask(`token=${secret} again ${secret}`), 'token=*** again ***');
  });

  it('hides its base64 forms: padded, unpadded and base64url', () => {
    const b64 = Buffer.from(secret).toString('base64');
    const url = Buffer.from(secret).toString('base64url');
    assert.notEqual(b64.replace(/=+$/, ''), url, 'this value differs in base64 and base64url');
    assert.equal(mask(`Basic ${b64}`), 'Basic ***');
    assert.equal(mask(`x ${b64.replace(/=+$/, '')} y`), 'x *** y');
    assert.equal(mask(`jwt.${url}.sig`), 'jwt.***.sig');
  });

  it('leaves values too short to be secrets alone, and lines without secrets untouched', () => {
    assert.equal(mask('about abba'), 'about abba');
    assert.equal(secretMasker([])('anything'), 'anything');
  });

  it('masks the longer of two overlapping secrets whole', () => {
    const m = secretMasker(['hunter22', 'hunter22-extended']);
    assert.equal(m('pw hunter22-extended'), 'pw ***');
  });
});

describe('sanitizeLine', () => {
  it('escapes terminal escapes and control characters, keeps tabs, caps the length', () => {
    assert.equal(sanitizeLine('\u001b[31mred\u0007'), '\\x1b[31mred\\x07');
    assert.equal(sanitizeLine('a\tb'), 'a\tb');
    assert.equal(sanitizeLine('x'.repeat(10), 4), 'xxxx… (6 more characters)');
  });
});
