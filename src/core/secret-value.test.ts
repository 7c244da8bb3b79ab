import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isPilotError } from './errors.js';
import { assertSecretValue, secretValueProblem } from './secret-value.js';
import { secretMasker } from './mask.js';

describe('secret values', () => {
  it('allows printable text, unicode, tabs and line breaks (PEM keys), and the empty value', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\r\nMIIEvQ\tIBADANBg\n-----END PRIVATE KEY-----\n';
    for (const v of ['', 'hunter2', 'päss wörd ✓ 密码', pem, 'a=b;c="d"\\e']) assert.equal(assertSecretValue(v, 'x'), v);
  });

  it('refuses NUL, other C0 controls and DEL, naming the character and never showing the value', () => {
    const cases: [string, RegExp][] = [
      ['topsecret\u0000value', /a NUL byte at position 10/],
      ['\u001b[31mtopsecret', /U\+001B at position 1/],
      ['topsecret\u007f', /a DEL character/],
      ['top\u000bsecret', /U\+000B/],
      ['top\u000csecret', /U\+000C/],
    ];
    for (const [v, re] of cases) {
      assert.throws(
        () => assertSecretValue(v, 'secret DB_PASSWORD'),
        (e: unknown) => {
          assert.ok(isPilotError(e) && e.code === 'bad_request');
          assert.match(e.message, re);
          assert.match(e.message, /^secret DB_PASSWORD contains/);
          assert.ok(!e.message.includes('topsecret') && !e.message.includes('secret\u0000'), e.message);
          return true;
        },
      );
    }
    assert.equal(secretValueProblem('fine\tvalue\n'), undefined);
  });

  it('masks a secret in its escaped forms too (as exec errors and JSON quote it)', () => {
    const mask = secretMasker(['pa\u0001ss"word']);
    assert.equal(mask("Received 'pa\\x01ss\"word'"), "Received '***'");
    assert.equal(mask('{"v":"pa\\u0001ss\\"word"}'), '{"v":"***"}');
    assert.equal(mask('plain pa\u0001ss"word'), 'plain ***');
  });
});
