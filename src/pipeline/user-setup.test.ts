import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readUserSetup } from './user-setup.js';

describe('readUserSetup (the host npm, for real)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-setup-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("finds the host npm's global and user npmrc and cafile, names them for the build, and collects the credentials to mask", async () => {
    const prefix = join(dir, 'prefix');
    mkdirSync(join(prefix, 'etc'), { recursive: true });
    const ca = join(dir, 'corp-ca.pem');
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\n');
    writeFileSync(join(prefix, 'etc', 'npmrc'), `cafile=${ca}\n//global.example/:_authToken=glob_tok_111\n`);
    const user = join(dir, 'user-npmrc');
    writeFileSync(user, 'https-proxy=http://alice:s3cr3tpass@proxy.example:3128\n');
    const app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, '.npmrc'), '//npm.example/:_authToken=${NPM_TOKEN}\n');
    writeFileSync(join(app, '.yarnrc.yml'), 'npmAuthToken: yarn_tok_333\n');
    const neutral = join(dir, 'neutral');
    mkdirSync(neutral);

    const s = await readUserSetup({
      hostEnv: {
        PATH: process.env.PATH,
        HOME: dir,
        PREFIX: prefix,
        npm_config_userconfig: user,
        HTTPS_PROXY: 'http://bob:pw_from_env@proxy:3128',
        PILOT_TOKEN: 'never',
      },
      neutralDir: neutral,
      appDir: app,
      extraEnv: { NPM_TOKEN: 'build_secret_222' },
    });
    assert.equal(s.npm.globalconfig, join(prefix, 'etc', 'npmrc'));
    assert.equal(s.npm.userconfig, user);
    assert.equal(s.npm.cafile, ca);
    assert.deepEqual(s.env, {
      npm_config_userconfig: user,
      HTTPS_PROXY: 'http://bob:pw_from_env@proxy:3128',
      npm_config_globalconfig: join(prefix, 'etc', 'npmrc'),
      NODE_EXTRA_CA_CERTS: ca,
    });
    for (const v of ['glob_tok_111', 's3cr3tpass', 'build_secret_222', 'yarn_tok_333', 'pw_from_env'])
      assert.ok(s.secretValues.includes(v), `${v}: ${JSON.stringify(s.secretValues)}`);
    assert.match(
      s.summary,
      new RegExp(
        `^global npmrc ${join(prefix, 'etc', 'npmrc')}; user npmrc ${user}; the app's \\.npmrc; cafile ${ca}; variables HTTPS_PROXY, npm_config_userconfig$`,
      ),
    );
    assert.ok(!s.summary.includes('s3cr3t') && !s.summary.includes('PILOT'));
    assert.equal(s.npmEnv['PILOT_TOKEN'], undefined);
  });
});
