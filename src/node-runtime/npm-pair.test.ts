import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { PilotError } from '../core/errors.js';
import { LocalRuntimeCache } from './local-cache.js';
import { npmCandidates, noNpmRuns, type NpmRelease } from './npm-pair.js';
import { hashFile } from './runtime-package.js';
import { fakeNpmTgz } from './test-runtimes.fixture.js';

/** npm's releases as the registry lists them (`npm view npm@>=1 version engines`), one or two per major. */
const RELEASES: NpmRelease[] = [
  { version: '1.4.29', enginesNode: '>=0.8' },
  { version: '2.15.12' },
  { version: '3.10.10' },
  { version: '4.6.1' },
  { version: '5.10.0' },
  { version: '5.9.0' },
  { version: '6.13.6' },
  { version: '6.13.7' },
  { version: '6.14.18', enginesNode: '6 >=6.2.0 || 8 || >=9.3.0' },
  { version: '7.24.2', enginesNode: '>=10' },
  { version: '8.19.4', enginesNode: '^12.13.0 || ^14.15.0 || >=16.0.0' },
  { version: '9.9.4', enginesNode: '^14.17.0 || ^16.13.0 || >=18.0.0' },
  { version: '10.9.4', enginesNode: '^18.17.0 || >=20.5.0' },
  { version: '11.6.2', enginesNode: '^20.17.0 || >=22.9.0' },
  { version: '12.2.2', enginesNode: '^22.22.2 || ^24.15.0 || >=26.0.0' },
  { version: '12.3.0', enginesNode: '^22.22.2 || ^24.15.0 || >=26.0.0' }, // published, not yet `latest`
  { version: '13.0.0-pre.1', enginesNode: '>=24' },
];
const pick = (node: string, enginesNpm?: string): string[] =>
  npmCandidates(RELEASES, node, { latest: '12.2.2', enginesNpm }).map((c) => c.version);

describe('npm paired with a pinned node', () => {
  it('takes the newest npm whose own engines.node admits the node, for every major', () => {
    const cases: [string, string][] = [
      ['6.17.1', '6.14.18'],
      ['8.17.0', '6.14.18'],
      ['10.24.1', '7.24.2'],
      ['12.22.12', '8.19.4'],
      ['14.21.3', '9.9.4'],
      ['16.20.2', '9.9.4'],
      ['18.20.8', '10.9.4'],
      ['20.20.2', '11.6.2'],
      ['22.12.0', '11.6.2'],
      ['22.23.3', '12.2.2'],
      ['24.21.0', '12.2.2'],
    ];
    for (const [node, npm] of cases) assert.equal(pick(node)[0], npm, `node ${node}`);
    const c = npmCandidates(RELEASES, '18.20.8', { latest: '12.2.2' })[0]!;
    assert.equal(c.unverified, false);
    assert.equal(c.why, 'its engines.node "^18.17.0 || >=20.5.0" admits 18.20.8');
  });

  it('for a node older than every declared range, tries the newest of each npm major that declares nothing, newest first', () => {
    assert.deepEqual(pick('4.9.1'), ['6.13.7', '5.10.0', '4.6.1', '3.10.10']);
    assert.ok(npmCandidates(RELEASES, '4.9.1').every((c) => c.unverified && /npm \d+\.x publishes no engines\.node/.test(c.why)));
    // Node 6.1 is below npm 6.14's ">=6.2.0": the same step-down, not npm 6.14.
    assert.equal(pick('6.1.0')[0], '6.13.7');
  });

  it('honours engines.npm: the newest npm in it that runs on the node', () => {
    assert.deepEqual(pick('16.20.2', '8'), ['8.19.4']);
    assert.equal(pick('20.20.2', '^10.2')[0], '10.9.4');
    assert.equal(pick('24.21.0', '12.3.x')[0], '12.3.0', 'asked by name: newer than latest is fine');
    assert.deepEqual(pick('4.9.1', '5.x'), ['5.10.0']);
  });

  it('refuses engines.npm that cannot run on the node, naming both', () => {
    assert.throws(
      () => pick('16.20.2', '^10'),
      (e: PilotError) => {
        assert.equal(e.code, 'npm_incompatible');
        assert.match(
          e.message,
          /engines\.npm "\^10" and Node\.js 16\.20\.2 exclude each other: npm 10\.9\.4 needs Node\.js "\^18\.17\.0 \|\| >=20\.5\.0"/,
        );
        return true;
      },
    );
    assert.throws(
      () => pick('20.20.2', '99'),
      (e: PilotError) => e.code === 'npm_incompatible' && /no npm release matches engines\.npm "99"/.test(e.message),
    );
    assert.throws(
      () => pick('20.20.2', 'banana'),
      (e: PilotError) => e.code === 'invalid_config' && /engines\.npm: "banana" is not a semver range/.test(e.message),
    );
    const err = noNpmRuns('4.9.1', [{ version: '5.10.0', error: 'SyntaxError' }], '5.x');
    assert.match(err.message, /engines\.npm "5\.x" and Node\.js 4\.9\.1 exclude each other: npm 5\.10\.0: SyntaxError/);
  });
});

describe('npm package in the runtime cache', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-npmpkg-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const nodeBinDir = dirname(process.execPath);
  const file = (name: string, buf: Buffer): string => {
    const f = join(dir, name);
    writeFileSync(f, buf);
    return f;
  };

  it('unpacks npm, links npm and npx to its cli, and checks `npm --version` on the node', async () => {
    const f = file('npm-9.9.4.tgz', fakeNpmTgz('9.9.4'));
    const cache = new LocalRuntimeCache(join(dir, 'c1'));
    const digest = (await hashFile(f)).digest;
    const npm = await cache.ensureNpm(digest, { version: '9.9.4', nodeBinDir }, () => Promise.resolve(f));
    assert.equal(npm.binDir, join(cache.npmDir(digest), 'bin'));
    assert.equal(readlinkSync(join(npm.binDir, 'npm')), join('..', 'package', 'bin', 'npm-cli.js'));
    assert.equal(readlinkSync(join(npm.binDir, 'npx')), join('..', 'package', 'bin', 'npx-cli.js'));
    assert.equal(cache.fetching(digest), false);
  });

  it('a damaged npm in the cache is found by its `npm --version` check in a later process, discarded and fetched again', async () => {
    const f = file('npm-10.9.4.tgz', fakeNpmTgz('10.9.4'));
    const digest = (await hashFile(f)).digest;
    let fetches = 0;
    const fetch = (): Promise<string> => {
      fetches++;
      return Promise.resolve(f);
    };
    const first = await new LocalRuntimeCache(join(dir, 'c3')).ensureNpm(digest, { version: '10.9.4', nodeBinDir }, fetch);
    rmSync(join(first.cli)); // npm-cli.js gone, as a half-finished copy or a disk error would leave it
    const npm = await new LocalRuntimeCache(join(dir, 'c3')).ensureNpm(digest, { version: '10.9.4', nodeBinDir }, fetch);
    assert.equal(fetches, 2);
    assert.equal(npm.binDir, first.binDir);
    assert.equal(readlinkSync(join(npm.binDir, 'npm')), join('..', 'package', 'bin', 'npm-cli.js'));
  });

  it("an npm that does not run on the node is npm_incompatible, with the node's own error, and nothing is kept", async () => {
    const f = file('npm-6.13.7.tgz', fakeNpmTgz('6.13.7', { broken: true }));
    const cache = new LocalRuntimeCache(join(dir, 'c2'));
    const digest = (await hashFile(f)).digest;
    await assert.rejects(
      cache.ensureNpm(digest, { version: '6.13.7', nodeBinDir }, () => Promise.resolve(f)),
      (e: PilotError) => {
        assert.equal(e.code, 'npm_incompatible');
        assert.match(
          e.message,
          new RegExp(`npm 6\\.13\\.7 does not run on Node\\.js ${process.versions.node.replaceAll('.', '\\.')}: SyntaxError: Block-scoped`),
        );
        return true;
      },
    );
    await assert.rejects(
      cache.ensureNpm(digest, { version: '6.13.8', nodeBinDir }, () => Promise.resolve(file('npm-other.tgz', fakeNpmTgz('6.13.7')))),
      (e: PilotError) => e.code === 'bad_request' && /holds npm@6\.13\.7, not npm@6\.13\.8/.test(e.message),
    );
  });
});
