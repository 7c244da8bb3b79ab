import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { compareVersions, formatVersion, maxSatisfying, parseRange, parseVersion, satisfies } from './semver.js';

const ok = (v: string, r: string): boolean => satisfies(parseVersion(v)!, parseRange(r)!);

describe('semver ranges for Node.js versions', () => {
  it('matches the forms people write in engines.node and .nvmrc', () => {
    const cases: [string, string, boolean][] = [
      ['22.23.3', '22.23.3', true], ['22.23.4', '22.23.3', false], ['20.1.0', 'v20.1.0', true],
      ['22.0.0', '22', true], ['22.23.3', '22.x', true], ['23.0.0', '22.x', false], ['21.9.9', '22.x', false],
      ['22.1.7', '22.1', true], ['22.2.0', '22.1.x', false], ['5.0.0', '*', true], ['5.0.0', '', true],
      ['20.11.0', '^20.11', true], ['20.99.0', '^20.11', true], ['21.0.0', '^20.11', false], ['20.10.9', '^20.11', false],
      ['0.10.5', '^0.10.1', true], ['0.11.0', '^0.10.1', false],
      ['20.11.9', '~20.11.1', true], ['20.12.0', '~20.11.1', false], ['20.11.0', '~20.11.1', false],
      ['20.5.0', '>=20 <21', true], ['21.0.0', '>=20 <21', false], ['19.9.0', '>= 20', false],
      ['18.20.0', '^18 || ^20', true], ['19.0.0', '^18 || ^20', false], ['20.3.0', '^18 || ^20', true],
      ['20.3.0', '20.1 - 20.5', true], ['20.5.9', '20.1 - 20.5', true], ['20.6.0', '20.1 - 20.5', false],
      ['22.0.0', '>21', true], ['21.5.0', '>21', false], ['21.0.0', '<=21', true], ['22.0.0', '<=21', false],
      ['23.0.0-rc.1', '22.x || 23.x', false], ['23.0.0-rc.1', '23.0.0-rc.1', true],
    ];
    for (const [v, r, want] of cases) assert.equal(ok(v, r), want, `${v} in ${JSON.stringify(r)}`);
  });

  it('refuses what is not a range', () => {
    for (const r of ['lts/*', 'banana', '22.x.y.z', '>=>20', 'node@22']) assert.equal(parseRange(r), undefined, r);
  });

  it('picks the highest matching version', () => {
    const list = ['20.20.2', '22.23.3', '22.9.0', '22.10.0', '23.0.0-rc.1', '24.1.0'];
    assert.equal(maxSatisfying(list, parseRange('22.x')!), '22.23.3');
    assert.equal(maxSatisfying(list, parseRange('^20')!), '20.20.2');
    assert.equal(maxSatisfying(list, parseRange('>=25')!), undefined);
  });

  it('an exact version matches itself only, and an x-range its own major (property)', () => {
    const ver = fc.record({ major: fc.nat(40), minor: fc.nat(40), patch: fc.nat(40) });
    fc.assert(fc.property(ver, ver, (a, b) => {
      const va = { ...a, pre: '' };
      const vb = { ...b, pre: '' };
      assert.equal(satisfies(vb, parseRange(formatVersion(va))!), compareVersions(va, vb) === 0);
      assert.equal(satisfies(vb, parseRange(`${a.major}.x`)!), a.major === b.major);
      assert.equal(satisfies(vb, parseRange(`^${formatVersion(va)}`)!), compareVersions(vb, va) >= 0 && (a.major > 0 ? b.major === a.major : a.minor > 0 ? b.major === 0 && b.minor === a.minor : compareVersions(vb, va) === 0));
    }));
  });
});
