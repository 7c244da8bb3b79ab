import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { skewFromDate } from './doctor-api.js';

describe('doctor clock skew', () => {
  const at = Date.parse('2026-01-01T12:00:00.000Z');
  it('reads a clock from an HTTP Date header, the second it truncates to counted as noise', () => {
    assert.equal(skewFromDate(new Date(at).toUTCString(), at, at + 20), 0);
    assert.equal(skewFromDate(new Date(at - 1000).toUTCString(), at, at + 20), 0);
    assert.equal(skewFromDate(new Date(at + 30_000).toUTCString(), at, at + 20), 30_490);
    assert.equal(skewFromDate(new Date(at - 600_000).toUTCString(), at, at + 20), -599_510);
  });
  it('no header or a bad one: unknown', () => {
    assert.equal(skewFromDate(null, at, at), undefined);
    assert.equal(skewFromDate('yesterday', at, at), undefined);
  });
});
