import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { isPilotError, PilotError } from '../core/errors.js';
import { pnpNodeOptions } from '../core/run-command.js';
import { buildSteps, type WorkspaceFacts } from './build-plan.js';
import { explainStepFailure } from '../pipeline/build-setup.js';
import {
  distPackage,
  installArgvFor,
  packageManagerEnv,
  parsePackageManagerField,
  wantedPackageManager,
  type PackageManagerFacts,
} from './package-manager.js';
import { readWorkspaceFacts } from './facts.js';

const FIXTURES = new URL('../../../test/fixtures/apps/', import.meta.url).pathname;
const pmf = (over: Partial<PackageManagerFacts> = {}): PackageManagerFacts => ({ lockfile: null, ...over });
const facts = (over: Partial<WorkspaceFacts> = {}): WorkspaceFacts => ({ hasPackageJson: true, lockfile: null, scripts: {}, ...over });
const steps = (c: readonly (readonly string[])[] | undefined, f: WorkspaceFacts, pm?: { name: 'npm' | 'yarn' | 'pnpm'; version: string }) =>
  buildSteps(c, f, pm).map((s) => `${s.name}: ${s.argv.join(' ')}`);

describe('wantedPackageManager', () => {
  it('takes packageManager first: name, exact version and corepack hash', () => {
    assert.deepEqual(wantedPackageManager(pmf({ packageManager: 'yarn@4.5.0', lockfile: 'npm' })), {
      name: 'yarn',
      spec: '4.5.0',
      source: 'packageManager "yarn@4.5.0"',
    });
    const w = wantedPackageManager(
      pmf({
        packageManager:
          'pnpm@9.12.0+sha512.4abf725084d7bcbafbd728bfc7bee61f2f791f977fd87542b3579dcb23504d170d46337945e4c66485cd12d588a0c0e570ed9c477e7ccdd8507cf05f3f92eaca',
      }),
    );
    assert.equal(w?.name, 'pnpm');
    assert.equal(w?.spec, '9.12.0');
    assert.match(w?.hash ?? '', /^sha512\.4abf7250[0-9a-f]{120}$/);
    assert.equal(w?.source, 'packageManager "pnpm@9.12.0+sha512.4abf7250…"');
    assert.equal(wantedPackageManager(pmf({ packageManager: 'npm@10.8.2' }))?.name, 'npm');
  });

  it('falls back to engines, then to the major the lockfile format implies', () => {
    assert.equal(wantedPackageManager(pmf({ lockfile: 'yarn', yarnLock: 'v1' }))?.spec, '1.x');
    assert.equal(wantedPackageManager(pmf({ lockfile: 'yarn', yarnLock: 'berry', yarnLockVersion: 8 }))?.spec, '4.x');
    assert.equal(wantedPackageManager(pmf({ lockfile: 'yarn', yarnLock: 'berry', yarnLockVersion: 6 }))?.spec, '3.x');
    assert.equal(wantedPackageManager(pmf({ lockfile: 'yarn', yarnLock: 'berry', yarnLockVersion: 4 }))?.spec, '2.x');
    assert.deepEqual(wantedPackageManager(pmf({ lockfile: 'yarn', yarnLock: 'berry', engines: { yarn: '^4.5.0' } })), {
      name: 'yarn',
      spec: '^4.5.0',
      source: 'engines.yarn "^4.5.0"',
    });
    assert.equal(wantedPackageManager(pmf({ lockfile: 'pnpm', pnpmLockVersion: '9.0' }))?.spec, '9.x');
    assert.equal(wantedPackageManager(pmf({ lockfile: 'pnpm', pnpmLockVersion: '6.0' }))?.spec, '8.x');
    assert.equal(wantedPackageManager(pmf({ lockfile: 'pnpm', pnpmLockVersion: '5.4' }))?.spec, '7.x');
    assert.equal(wantedPackageManager(pmf({ lockfile: 'pnpm', engines: { pnpm: '8.15.9' } }))?.spec, '8.15.9');
  });

  it('leaves npm apps (package-lock, shrinkwrap, no lockfile) to the npm paired with the node', () => {
    assert.equal(wantedPackageManager(pmf({ lockfile: 'npm' })), undefined);
    assert.equal(wantedPackageManager(pmf({ lockfile: null, engines: { yarn: '1.x' } })), undefined);
  });

  it('refuses hostile or malformed packageManager values with invalid_config and a hint', () => {
    for (const bad of [
      'bun@1.1.0',
      'yarn',
      'yarn@^4',
      'yarn@latest',
      'yarn@4.5.0 && rm -rf /',
      'yarn@https://example.com/yarn.js',
      '',
      42,
      ['yarn@4.5.0'],
      'pnpm@9.12.0+sha512',
      'pnpm@9.12.0+md4.abcdef',
      '@yarnpkg/cli-dist@4.5.0',
    ]) {
      assert.throws(
        () => parsePackageManagerField(bad),
        (e: unknown) => {
          assert.ok(isPilotError(e) && e.code === 'invalid_config', String(e));
          assert.match(e.message, /packageManager/);
          assert.ok(e.hint?.includes('yarn@4.5.0'));
          return true;
        },
        JSON.stringify(bad),
      );
    }
    assert.throws(() => wantedPackageManager(pmf({ lockfile: 'yarn', engines: { yarn: 'not a range!' } })), /engines\.yarn/);
  });
});

describe('package manager commands', () => {
  it('installs frozen by each manager, unfrozen only without its lockfile', () => {
    assert.deepEqual(installArgvFor({ name: 'npm', version: '10.8.2' }, true), ['npm', 'ci', '--no-audit', '--no-fund']);
    assert.deepEqual(installArgvFor({ name: 'yarn', version: '1.22.22' }, true), [
      'yarn',
      'install',
      '--frozen-lockfile',
      '--non-interactive',
    ]);
    assert.deepEqual(installArgvFor({ name: 'yarn', version: '4.5.0' }, true), ['yarn', 'install', '--immutable']);
    assert.deepEqual(installArgvFor({ name: 'yarn', version: '4.5.0' }, false), ['yarn', 'install', '--no-immutable']);
    assert.deepEqual(installArgvFor({ name: 'pnpm', version: '9.12.0' }, true), ['pnpm', 'install', '--frozen-lockfile']);
    assert.deepEqual(installArgvFor({ name: 'pnpm', version: '8.15.9' }, false), ['pnpm', 'install', '--no-frozen-lockfile']);
  });

  it('knows which npm package and file each manager version is', () => {
    assert.deepEqual(distPackage({ name: 'yarn', version: '1.22.22' }), { pkg: 'yarn', entry: 'bin/yarn.js' });
    assert.deepEqual(distPackage({ name: 'yarn', version: '4.5.0' }), { pkg: '@yarnpkg/cli-dist', entry: 'bin/yarn.js' });
    assert.deepEqual(distPackage({ name: 'yarn', version: '2.4.3' }).pkg, '@yarnpkg/cli-dist');
    assert.deepEqual(distPackage({ name: 'pnpm', version: '9.12.0' }), { pkg: 'pnpm', entry: 'bin/pnpm.cjs' });
  });

  it("keeps a Plug'n'Play cache inside the app (it ships in the artifact), not for node-modules", () => {
    assert.equal(packageManagerEnv({ name: 'yarn', version: '4.5.0' }, undefined)['YARN_ENABLE_GLOBAL_CACHE'], 'false');
    assert.equal(packageManagerEnv({ name: 'yarn', version: '4.5.0' }, 'pnp')['YARN_ENABLE_GLOBAL_CACHE'], 'false');
    assert.equal(packageManagerEnv({ name: 'yarn', version: '4.5.0' }, 'node-modules')['YARN_ENABLE_GLOBAL_CACHE'], undefined);
    assert.deepEqual(packageManagerEnv({ name: 'yarn', version: '1.22.22' }, undefined), {});
  });
});

describe('Heroku build conventions', () => {
  const scripts = { 'heroku-prebuild': 'a', build: 'b', 'heroku-postbuild': 'c' };
  it('runs heroku-prebuild before the install and heroku-postbuild instead of build', () => {
    assert.deepEqual(steps(undefined, facts({ lockfile: 'npm', scripts })), [
      'heroku-prebuild: npm run heroku-prebuild',
      'install: npm ci --no-audit --no-fund',
      'heroku-postbuild: npm run heroku-postbuild',
    ]);
    assert.deepEqual(steps(undefined, facts({ lockfile: 'yarn', scripts }), { name: 'yarn', version: '1.22.22' }), [
      'heroku-prebuild: yarn run heroku-prebuild',
      'install: yarn install --frozen-lockfile --non-interactive',
      'heroku-postbuild: yarn run heroku-postbuild',
    ]);
  });

  it("runs build through the app's manager (PnP apps have no node_modules/.bin), prebuild of a berry app through npm", () => {
    assert.deepEqual(
      steps(undefined, facts({ lockfile: 'yarn', yarnLock: 'berry', scripts: { 'heroku-prebuild': 'a', build: 'b' } }), {
        name: 'yarn',
        version: '4.5.0',
      }),
      ['heroku-prebuild: npm run heroku-prebuild', 'install: yarn install --immutable', 'build: yarn run build'],
    );
    assert.deepEqual(steps(undefined, facts({ lockfile: 'pnpm', scripts: { build: 'b' } }), { name: 'pnpm', version: '9.12.0' }), [
      'install: pnpm install --frozen-lockfile',
      'build: pnpm run build',
    ]);
  });

  it('lets pilot.yaml build replace build and heroku-postbuild, but keeps heroku-prebuild', () => {
    assert.deepEqual(steps([['make']], facts({ lockfile: 'npm', scripts })), [
      'heroku-prebuild: npm run heroku-prebuild',
      'install: npm ci --no-audit --no-fund',
      'build: make',
    ]);
  });

  it('uses the lockfile of the manager asked for: packageManager yarn over a package-lock.json installs unfrozen', () => {
    assert.deepEqual(steps(undefined, facts({ lockfile: 'npm' }), { name: 'yarn', version: '4.5.0' }), [
      'install: yarn install --no-immutable',
    ]);
  });
});

describe('package managers of the real fixture apps (lockfiles written by the real tools)', () => {
  const cases: [string, string, string][] = [
    ['pm-npm', '(npm of the node)', 'install: npm ci --no-audit --no-fund|build: npm run build'],
    [
      'pm-yarn1',
      'yarn 1.22.22 packageManager "yarn@1.22.22"',
      'heroku-prebuild: yarn run heroku-prebuild|install: yarn install --frozen-lockfile --non-interactive|heroku-postbuild: yarn run heroku-postbuild',
    ],
    ['pm-berry-pnp', 'yarn 4.5.0 packageManager "yarn@4.5.0+sha512.837566d2…"', 'install: yarn install --immutable|build: yarn run build'],
    ['pm-berry-nm', 'yarn ~4.5.0 engines.yarn "~4.5.0"', 'heroku-prebuild: npm run heroku-prebuild|install: yarn install --immutable'],
    ['pm-pnpm', 'pnpm 9.12.0 packageManager "pnpm@9.12.0"', 'install: pnpm install --frozen-lockfile|build: pnpm run build'],
  ];
  for (const [app, wanted, plan] of cases) {
    it(`${app}: ${wanted}`, async () => {
      const f = await readWorkspaceFacts(join(FIXTURES, app));
      const w = wantedPackageManager(f);
      assert.equal(w === undefined ? '(npm of the node)' : `${w.name} ${w.spec} ${w.source}`, wanted);
      const pm = w === undefined ? undefined : { name: w.name, version: w.spec.replace(/^[\^~]/, '') };
      assert.equal(steps(undefined, f, pm).join('|'), plan);
    });
  }

  it('tells berry lockfiles (and their format) from v1 ones, and reads the linker', async () => {
    const berry = await readWorkspaceFacts(join(FIXTURES, 'pm-berry-nm'));
    assert.equal(berry.yarnLock, 'berry');
    assert.equal(berry.yarnLockVersion, 8);
    assert.equal(berry.yarnLinker, 'node-modules');
    assert.equal((await readWorkspaceFacts(join(FIXTURES, 'pm-yarn1'))).yarnLock, 'v1');
    assert.equal((await readWorkspaceFacts(join(FIXTURES, 'pm-pnpm'))).pnpmLockVersion, '9.0');
  });
});

describe('pnpNodeOptions (agent)', () => {
  it("loads .pnp.cjs (and the ESM loader) by absolute path, keeping the app's own options", () => {
    assert.equal(pnpNodeOptions('/r', { pnp: false, loader: false }, '--max-old-space-size=100'), undefined);
    assert.equal(pnpNodeOptions('/r', { pnp: true, loader: false }, undefined), '--require /r/.pnp.cjs');
    assert.equal(
      pnpNodeOptions('/r', { pnp: true, loader: true }, ' --enable-source-maps '),
      '--require /r/.pnp.cjs --experimental-loader file:///r/.pnp.loader.mjs --enable-source-maps',
    );
    assert.equal(pnpNodeOptions('/a b', { pnp: true, loader: false }, undefined), '--require "/a b/.pnp.cjs"');
  });
});

describe('explainStepFailure', () => {
  const failed = new PilotError('build_failed', 'step `yarn install --immutable` exited with code 1');
  const install = { name: 'install', argv: ['yarn', 'install', '--immutable'] };
  const ranged = {
    facts: { hasPackageJson: true, lockfile: 'yarn' as const, scripts: {} },
    app: 'shop',
    missingVars: [] as string[],
    plan: [],
    env: {},
    pm: { name: 'yarn' as const, version: '4.18.1' },
    wanted: { name: 'yarn' as const, spec: '^4.5.0', source: 'engines.yarn "^4.5.0"' },
    provided: { pm: { name: 'yarn' as const, version: '4.18.1' }, binDir: '/x', via: 'cache' as const },
  };
  it('hints at pinning when a range picked the manager that failed the install', () => {
    const e = explainStepFailure(failed, install, ranged);
    assert.ok(isPilotError(e) && e.code === 'build_failed' && e.message === failed.message);
    assert.match(e.hint ?? '', /yarn 4\.18\.1 is the newest match of engines\.yarn "\^4\.5\.0".*"packageManager": "yarn@<version>"/);
  });
  it("names the build secret the app's .npmrc needs when the install fails without it", () => {
    const e = explainStepFailure(failed, install, { ...ranged, missingVars: ['NPM_TOKEN'] });
    assert.ok(isPilotError(e));
    assert.equal(
      e.hint,
      "The app's .npmrc uses ${NPM_TOKEN}, which the build does not have: `pilot secrets set shop NPM_TOKEN --build` (value on stdin), then run again.",
    );
  });

  it('leaves other failures alone: exact versions, other steps', () => {
    assert.equal(explainStepFailure(failed, install, { ...ranged, wanted: { ...ranged.wanted, spec: '4.18.1' } }), failed);
    assert.equal(explainStepFailure(failed, { name: 'build', argv: ['yarn', 'run', 'build'] }, ranged), failed);
  });
});
