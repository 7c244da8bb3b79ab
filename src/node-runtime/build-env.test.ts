import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { secretMasker } from '../core/mask.js';
import { passesToBuild, setupSecretValues, unresolvedNpmrcVars, userSetupEnv, withNodeRuntime, yarnrcSecretValues } from './build-env.js';

describe("the user's set-up reaches the build", () => {
  const host = {
    PATH: '/usr/bin',
    HOME: '/root',
    PILOT_TOKEN: 'pilot_admin_x',
    GITHUB_TOKEN: 'ghp_x',
    AWS_SECRET_ACCESS_KEY: 'k',
    HTTPS_PROXY: 'http://u:p%40ss@proxy:3128',
    http_proxy: 'http://proxy:3128',
    NO_PROXY: 'localhost',
    no_proxy: '127.0.0.1',
    npm_config_registry: 'https://npm.corp/',
    NPM_CONFIG_STRICT_SSL: 'true',
    NODE_EXTRA_CA_CERTS: '/etc/corp-ca.pem',
    COREPACK_NPM_REGISTRY: 'https://npm.corp',
    YARN_NPM_REGISTRY_SERVER: 'https://npm.corp',
    npm_config_user_agent: 'npm/10',
    npm_config_local_prefix: '/opt/pilot',
  };

  it("passes npm_config_* (any case), proxies (both cases), CA and the managers' variables; nothing else", () => {
    const env = userSetupEnv(host, {});
    assert.deepEqual(Object.keys(env).sort(), [
      'COREPACK_NPM_REGISTRY',
      'HTTPS_PROXY',
      'NODE_EXTRA_CA_CERTS',
      'NO_PROXY',
      'NPM_CONFIG_STRICT_SSL',
      'YARN_NPM_REGISTRY_SERVER',
      'http_proxy',
      'no_proxy',
      'npm_config_registry',
    ]);
    assert.equal(passesToBuild('PILOT_HOME'), false);
    assert.equal(passesToBuild('npm_config_user_agent'), false, 'set by npm for its scripts, not configuration');
  });

  it("names the host npmrc files, so a pinned runtime's npm reads the host's global npmrc, and turns cafile into NODE_EXTRA_CA_CERTS", () => {
    const env = userSetupEnv({ PATH: '/usr/bin' }, { globalconfig: '/usr/etc/npmrc', userconfig: '/root/.npmrc', cafile: '/etc/ca.pem' });
    assert.deepEqual(env, {
      npm_config_globalconfig: '/usr/etc/npmrc',
      npm_config_userconfig: '/root/.npmrc',
      NODE_EXTRA_CA_CERTS: '/etc/ca.pem',
    });
    // The user's own choices win.
    const own = userSetupEnv(
      { NPM_CONFIG_GLOBALCONFIG: '/mine', NODE_EXTRA_CA_CERTS: '/other.pem' },
      { globalconfig: '/usr/etc/npmrc', cafile: '/etc/ca.pem' },
    );
    assert.deepEqual(own, { NPM_CONFIG_GLOBALCONFIG: '/mine', NODE_EXTRA_CA_CERTS: '/other.pem' });
    // And a pinned runtime keeps them (only PATH and npm_config_nodedir change).
    const pinned = withNodeRuntime({ ...env, PATH: '/usr/bin' }, { binDir: '/rt/bin', root: '/rt' });
    assert.equal(pinned['npm_config_globalconfig'], '/usr/etc/npmrc');
    assert.equal(pinned['PATH'], '/rt/bin:/usr/bin');
  });

  it('finds the credentials among npmrc lines and variables, to mask them in run logs', () => {
    const npmrc = [
      'registry=https://npm.corp/',
      '//npm.corp/:_authToken=npm_tok_123456',
      '//other/:_auth = "dXNlcjpwYXNz"',
      '//other/:_password=cGFzc3dvcmQ=',
      '//third/:_authToken=${NPM_TOKEN}',
      'https-proxy=http://bob:hunter22@proxy:3128',
      '; //commented/:_authToken=not-this-one',
      'cafile=/etc/ca.pem',
      'email=dev@example.com',
    ].join('\n');
    const values = setupSecretValues([npmrc], {
      NPM_TOKEN: 'from_build_secret',
      npm_config__authToken: 'envtok_999',
      HTTPS_PROXY: 'http://u:p%40ss@proxy:3128',
      npm_config_registry: 'https://npm.corp/',
    });
    for (const v of ['npm_tok_123456', 'dXNlcjpwYXNz', 'cGFzc3dvcmQ=', 'from_build_secret', 'hunter22', 'envtok_999', 'p%40ss', 'p@ss'])
      assert.ok(values.includes(v), `${v} in ${JSON.stringify(values)}`);
    for (const v of ['https://npm.corp/', '/etc/ca.pem', 'dev@example.com', 'not-this-one']) assert.ok(!values.includes(v), v);
    const mask = secretMasker(values);
    assert.equal(
      mask('npm http fetch GET 401 https://npm.corp/x (token npm_tok_123456)'),
      'npm http fetch GET 401 https://npm.corp/x (token ***)',
    );
    assert.equal(mask('proxy http://bob:hunter22@proxy:3128'), 'proxy http://***@proxy:3128');
  });

  it('finds yarn berry credentials in .yarnrc.yml (top level and per scope or registry)', () => {
    const yarnrc = [
      'nodeLinker: pnp',
      'npmAuthToken: "yrn_top_123"',
      'npmScopes:',
      '  corp:',
      '    npmRegistryServer: "https://npm.corp"',
      '    npmAuthToken: ${CORP_TOKEN}',
      'npmRegistries:',
      '  "https://other":',
      "    npmAuthIdent: 'dXNlcjpwYXNz'",
    ].join('\n');
    assert.deepEqual(yarnrcSecretValues([yarnrc], { CORP_TOKEN: 'corp_secret_9' }).sort(), [
      'corp_secret_9',
      'dXNlcjpwYXNz',
      'yrn_top_123',
    ]);
    assert.deepEqual(yarnrcSecretValues(['npmAuthToken: ${MISSING}'], {}), []);
  });

  it('names the ${VAR}s of an npmrc the build does not have', () => {
    const npmrc = '//npm.corp/:_authToken=${NPM_TOKEN}\n# //x/:_auth=${COMMENTED}\nregistry=${REGISTRY_URL}\ncache=${HOME}/.npm\n';
    assert.deepEqual(unresolvedNpmrcVars(npmrc, { HOME: '/root', REGISTRY_URL: 'https://npm.corp/' }), ['NPM_TOKEN']);
    assert.deepEqual(unresolvedNpmrcVars(npmrc, { HOME: '/root', REGISTRY_URL: 'x', NPM_TOKEN: 't' }), []);
  });
});
