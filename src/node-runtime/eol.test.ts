import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { endOfLife, eolWarning } from './eol.js';

const NOV_2026 = Date.parse('2026-11-27T12:00:00Z');

describe('Node.js end of life', () => {
  it('knows the EOL majors as of 2026-11: everything below 22 and every odd major but the newest', () => {
    for (const v of [
      '0.12.18',
      '4.9.1',
      '6.17.1',
      '8.17.0',
      '10.24.1',
      '12.22.12',
      '14.21.3',
      '16.20.2',
      '18.20.8',
      '20.20.2',
      '19.9.0',
      '21.7.3',
      '23.11.1',
      '25.9.0',
    ]) {
      assert.ok(endOfLife(v, NOV_2026), `${v} is EOL`);
    }
    for (const v of ['22.23.3', '24.21.0', '26.12.1', '27.0.0', '30.1.0', 'banana'])
      assert.equal(endOfLife(v, NOV_2026), undefined, `${v} is not known to be EOL`);
    assert.deepEqual(endOfLife('0.10.48', NOV_2026), { line: '0.10', date: '2016-10-31' });
  });

  it('takes the date from its argument: 18 was supported on its last day and EOL the day after', () => {
    assert.equal(endOfLife('18.20.8', Date.parse('2025-04-30T12:00:00Z')), undefined);
    assert.deepEqual(endOfLife('18.20.8', Date.parse('2025-05-01T00:00:01Z')), { line: '18', date: '2025-04-30' });
  });

  it('warns in words, naming the supported majors', () => {
    assert.equal(eolWarning('22.23.3', NOV_2026), undefined);
    assert.equal(
      eolWarning('16.20.2', NOV_2026),
      'warning: Node.js 16 reached its end of life on 2023-09-11 (no security fixes since): 16.20.2 deploys, but plan an upgrade to a supported major (22, 24, 26, 27)',
    );
  });
});
