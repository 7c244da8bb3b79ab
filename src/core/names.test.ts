import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isValidName, nameFrom } from './names.js';

describe('nameFrom', () => {
  it('makes names that public samples carry into valid app names', () => {
    assert.equal(nameFrom('01-up-and-running'), 'up-and-running');
    assert.equal(nameFrom('My_App.v2'), 'my-app-v2');
    assert.equal(nameFrom('app service hello world'), 'app-service-hello-world');
    assert.equal(nameFrom('--x--'), 'x');
    assert.equal(nameFrom('a'.repeat(70) + '-b'), 'a'.repeat(63));
  });

  it('gives nothing when no letter is left', () => {
    assert.equal(nameFrom('2024'), undefined);
    assert.equal(nameFrom('___'), undefined);
    assert.equal(nameFrom(''), undefined);
  });

  it('returns a valid name or nothing, for any text, and keeps valid names as they are (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), (s) => {
        const n = nameFrom(s);
        assert.ok(n === undefined || isValidName(n), JSON.stringify(n));
        if (isValidName(s)) assert.equal(n, s);
      }),
    );
  });
});
