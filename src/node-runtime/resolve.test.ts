import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PilotError } from '../core/errors.js';
import { nodePlatform } from './platform.js';
import { describeSource, exactVersion, resolveVersion, wantedNode } from './resolve.js';

const VERSIONS = ['18.20.8', '20.19.0', '20.20.2', '22.9.0', '22.23.3', '24.1.0', '25.2.1'];

describe('wanted Node.js version', () => {
  it('takes pilot.yaml, then .node-version, then .nvmrc, then engines.node', () => {
    const all = { pilotYaml: '22.23.3', nodeVersion: '20\n', nvmrc: 'v18\n', enginesNode: '>=16' };
    assert.deepEqual(wantedNode(all), { spec: '22.23.3', file: 'pilot.yaml' });
    assert.deepEqual(wantedNode({ ...all, pilotYaml: undefined }), { spec: '20', file: '.node-version' });
    assert.deepEqual(wantedNode({ ...all, pilotYaml: undefined, nodeVersion: '# comment only\n\n' }), { spec: 'v18', file: '.nvmrc' });
    assert.deepEqual(wantedNode({ enginesNode: ' 22.x ' }), { spec: '22.x', file: 'engines.node' });
    assert.equal(wantedNode({}), undefined);
    assert.equal(describeSource({ spec: '22.x', file: 'engines.node' }), 'engines.node "22.x"');
  });

  it('resolves a range to the highest version the registry has', () => {
    assert.equal(resolveVersion({ spec: '22.x', file: 'engines.node' }, VERSIONS, 'reg'), '22.23.3');
    assert.equal(resolveVersion({ spec: 'v20', file: '.nvmrc' }, VERSIONS, 'reg'), '20.20.2');
    assert.equal(resolveVersion({ spec: 'node', file: '.nvmrc' }, VERSIONS, 'reg'), '25.2.1');
    assert.equal(exactVersion('v20.20.2'), '20.20.2');
    assert.equal(exactVersion('20.x'), undefined);
  });

  it('a range that matches nothing is refused with the range and the nearest versions', () => {
    assert.throws(
      () => resolveVersion({ spec: '^99', file: 'engines.node' }, VERSIONS, 'the npm registry R'),
      (e: PilotError) => {
        assert.equal(e.code, 'node_version_not_found');
        assert.match(e.message, /no Node\.js version matches "\^99" \(engines\.node\) in the npm registry R; nearest: 25\.2\.1, 24\.1\.0/);
        return true;
      },
    );
    assert.throws(() => resolveVersion({ spec: '22.99.x', file: 'pilot.yaml' }, VERSIONS, 'R'), /nearest: 22\.23\.3, 22\.9\.0, /);
  });

  it('refuses LTS names and text that is no range', () => {
    for (const spec of ['lts/iron', 'lts/*', 'lts', 'Hydrogen', 'iron']) {
      for (const file of ['.nvmrc', 'engines.node'] as const) {
        assert.throws(
          () => resolveVersion({ spec, file }, VERSIONS, 'R'),
          (e: PilotError) => e.code === 'invalid_config' && /names an LTS line by name/.test(e.message) && /22\.x/.test(e.hint ?? ''),
          `${file} ${spec}`,
        );
      }
    }
    for (const spec of ['banana', '22.x.y.z', '>=>20', 'node@22', '20; rm -rf /']) {
      assert.throws(
        () => resolveVersion({ spec, file: '.nvmrc' }, VERSIONS, 'R'),
        (e: PilotError) => e.code === 'invalid_config' && e.message.includes(`${JSON.stringify(spec)} is not a Node.js version`),
        spec,
      );
    }
  });

  it('reads engines.node exactly as npm does (the semver package)', () => {
    const all = [
      '4.9.1',
      '6.17.1',
      '8.17.0',
      '10.24.1',
      '14.21.3',
      '16.20.2',
      '17.9.1',
      '18.20.8',
      '20.20.2',
      '22.12.0',
      '22.23.3',
      '23.0.0-rc.1',
      '24.21.0',
    ];
    const cases: [string, string][] = [
      ['>=14', '24.21.0'],
      ['^16 || ^18', '18.20.8'],
      ['16.x', '16.20.2'],
      ['>= 14 < 17', '16.20.2'],
      ['~22.12', '22.12.0'],
      ['4.9.1', '4.9.1'],
      ['v8', '8.17.0'],
      ['=10.24.1', '10.24.1'],
      ['6 - 8', '8.17.0'],
      ['*', '24.21.0'],
      ['<18', '17.9.1'],
      ['22.x || 23.x', '22.23.3'], // a pre-release only when the range names one
      ['^14.0.0 || >=16.0.0 <17', '16.20.2'],
    ];
    for (const [spec, want] of cases) assert.equal(resolveVersion({ spec, file: 'engines.node' }, all, 'R'), want, spec);
    // nvm's aliases are version-file words, not npm ranges.
    assert.equal(resolveVersion({ spec: 'latest', file: '.node-version' }, all, 'R'), '24.21.0');
    assert.throws(
      () => resolveVersion({ spec: 'latest', file: 'engines.node' }, all, 'R'),
      (e: PilotError) => e.code === 'invalid_config',
    );
    assert.equal(resolveVersion({ spec: '18', file: '--node' }, all, 'R'), '18.20.8');
    assert.equal(describeSource({ spec: '18', file: '--node' }), '--node "18"');
  });
});

describe('runtime platform', () => {
  it('accepts linux-x64 and names what is supported for anything else', () => {
    assert.equal(nodePlatform('linux', 'x64'), 'linux-x64');
    for (const [p, a] of [
      ['darwin', 'arm64'],
      ['linux', 'arm64'],
      ['win32', 'x64'],
    ] as const) {
      assert.throws(
        () => nodePlatform(p, a),
        (e: PilotError) =>
          e.code === 'unsupported_platform' && e.message.includes(`${p}-${a}`) && /supported platforms are linux-x64/.test(e.message),
      );
    }
  });
});
