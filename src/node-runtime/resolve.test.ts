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
    assert.throws(() => resolveVersion({ spec: '^99', file: 'engines.node' }, VERSIONS, 'the npm registry R'), (e: PilotError) => {
      assert.equal(e.code, 'node_version_not_found');
      assert.match(e.message, /no Node\.js version matches "\^99" \(engines\.node\) in the npm registry R; nearest: 25\.2\.1, 24\.1\.0/);
      return true;
    });
    assert.throws(() => resolveVersion({ spec: '22.99.x', file: 'pilot.yaml' }, VERSIONS, 'R'), /nearest: 22\.23\.3, 22\.9\.0, /);
  });

  it('refuses LTS codenames and text that is no range', () => {
    assert.throws(() => resolveVersion({ spec: 'lts/iron', file: '.nvmrc' }, VERSIONS, 'R'), (e: PilotError) => e.code === 'invalid_config' && /LTS/.test(e.message) && /22\.x/.test(e.hint ?? ''));
    assert.throws(() => resolveVersion({ spec: 'banana', file: '.nvmrc' }, VERSIONS, 'R'), (e: PilotError) => e.code === 'invalid_config' && /"banana" is not a Node\.js version/.test(e.message));
  });
});

describe('runtime platform', () => {
  it('accepts linux-x64 and names what is supported for anything else', () => {
    assert.equal(nodePlatform('linux', 'x64'), 'linux-x64');
    for (const [p, a] of [['darwin', 'arm64'], ['linux', 'arm64'], ['win32', 'x64']] as const) {
      assert.throws(() => nodePlatform(p, a), (e: PilotError) => e.code === 'unsupported_platform' && e.message.includes(`${p}-${a}`) && /supported platforms are linux-x64/.test(e.message));
    }
  });
});
