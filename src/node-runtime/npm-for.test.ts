/**
 * npmFor against a small npm mirror this test serves on loopback (the real npm CLI asks it): which
 * npm is chosen, that a candidate which does not run on the node is passed over, that a tampered
 * tarball is refused, and the offline fallback. The "npm" packages are tiny fakes whose
 * npm-cli.js prints their version; the node is the one running this test.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { PilotError } from '../core/errors.js';
import { runCommand } from '../os/exec.js';
import { npmEnv } from './npm-registry.js';
import { hostNpm, npmFor, pairNpm } from './provide-npm.js';
import { fakeNpmTgz } from './test-runtimes.fixture.js';

const work = mkdtempSync(join(tmpdir(), 'pilot-npmfor-'));
const node = process.versions.node;
const nodeBinDir = dirname(process.execPath);
const sri = (b: Buffer): string => `sha512-${createHash('sha512').update(b).digest('base64')}`;

/** name → { engines.node, tarball served } per mirror. */
type Mirror = Record<string, { engines?: string; body: Buffer; published?: Buffer }>;
const MIRRORS: Record<string, Mirror> = {
  // The newest release asks for a node nobody has; the one before admits this node.
  declared: {
    '12.0.0': { engines: '>=99', body: fakeNpmTgz('12.0.0') },
    '11.0.0': { engines: `>=${process.versions.node.split('.')[0]}`, body: fakeNpmTgz('11.0.0') },
    '10.0.0': { engines: '>=0.8', body: fakeNpmTgz('10.0.0') },
  },
  // Nothing declared: the newest does not run on this node (as npm 6.13 on Node 4), the next does.
  undeclared: {
    '6.13.7': { body: fakeNpmTgz('6.13.7', { broken: true }) },
    '5.10.0': { body: fakeNpmTgz('5.10.0') },
  },
  // The mirror serves other bytes than the integrity it publishes.
  tampered: {
    '11.0.0': { engines: '>=0.8', body: fakeNpmTgz('11.0.0', { broken: true }), published: fakeNpmTgz('11.0.0') },
  },
};

let server: Server;
let base = '';

function env(mirror: string): Record<string, string> {
  return {
    ...npmEnv(),
    npm_config_registry: `${base}/${mirror}/`,
    npm_config_cache: join(work, `npm-cache-${mirror}`),
    npm_config_fetch_retries: '0',
    npm_config_userconfig: join(work, 'no-npmrc'),
    npm_config_prefer_online: 'true',
  };
}

before(async () => {
  server = createServer((req, res) => {
    const m = /^\/(\w+)\/npm(?:\/-\/npm-(\d+\.\d+\.\d+)\.tgz)?$/.exec(req.url ?? '');
    const mirror = m ? MIRRORS[m[1]!] : undefined;
    if (!m || !mirror) {
      res.statusCode = 404;
      res.end('{}');
      return;
    }
    if (m[2] !== undefined) {
      const v = mirror[m[2]];
      res.statusCode = v ? 200 : 404;
      res.end(v ? v.body : '{}');
      return;
    }
    const versions = Object.fromEntries(
      Object.entries(mirror).map(([v, x]) => [
        v,
        {
          name: 'npm',
          version: v,
          ...(x.engines ? { engines: { node: x.engines } } : {}),
          dist: { integrity: sri(x.published ?? x.body), tarball: `${base}/${m[1]}/npm/-/npm-${v}.tgz` },
        },
      ]),
    );
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ name: 'npm', 'dist-tags': { latest: Object.keys(mirror).sort().at(-1) }, versions }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
after(async () => {
  await new Promise((r) => server.close(r));
  // npm may still be writing its cache as its process exits (CI saw ENOTEMPTY once): retry the removal.
  rmSync(work, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
});

describe('npmFor: the npm for a pinned node, from the registry', { timeout: 120_000 }, () => {
  it('chooses the newest npm whose engines.node admits the node, and its bin runs `npm --version` there', async () => {
    const lines: string[] = [];
    const npm = await npmFor(node, undefined, {
      nodeBinDir,
      cacheDir: join(work, 'c1'),
      npmEnv: env('declared'),
      log: (l) => lines.push(l),
    });
    assert.equal(npm.version, '11.0.0');
    assert.match(npm.digest, /^sha256:[0-9a-f]{64}$/);
    assert.match(
      lines.join('\n'),
      new RegExp(
        `npm 11\\.0\\.0 paired with Node\\.js ${node.replaceAll('.', '\\.')}: the newest npm that runs on it \\(its engines\\.node ">=\\d+" admits`,
      ),
    );
    const r = await runCommand(['npm', '--version'], {
      cwd: work,
      env: { PATH: `${npm.binDir}:${nodeBinDir}:/usr/bin:/bin` },
      timeoutMs: 30_000,
    });
    assert.deepEqual([r.code, r.tail.join('').trim()], [0, '11.0.0']);
    // engines.npm narrows it.
    assert.equal((await npmFor(node, '10', { nodeBinDir, cacheDir: join(work, 'c1'), npmEnv: env('declared') })).version, '10.0.0');
    await assert.rejects(
      npmFor(node, '12', { nodeBinDir, cacheDir: join(work, 'c1'), npmEnv: env('declared') }),
      (e: PilotError) =>
        e.code === 'npm_incompatible' &&
        new RegExp(
          `engines\\.npm "12" and Node\\.js ${node.replaceAll('.', '\\.')} exclude each other: npm 12\\.0\\.0 needs Node\\.js ">=99"`,
        ).test(e.message),
    );
  });

  it('passes over an npm that declares nothing and does not run on the node, for the next major', async () => {
    const lines: string[] = [];
    const npm = await npmFor(node, undefined, {
      nodeBinDir,
      cacheDir: join(work, 'c2'),
      npmEnv: env('undeclared'),
      log: (l) => lines.push(l),
    });
    assert.equal(npm.version, '5.10.0');
    assert.match(
      lines.join('\n'),
      /npm 6\.13\.7 does not run on Node\.js \S+: SyntaxError: Block-scoped declarations .*; trying an older one/,
    );
    assert.match(
      lines.join('\n'),
      /npm 5\.10\.0 paired with Node\.js \S+: the newest npm that runs on it \(npm 5\.x publishes no engines\.node, and `npm --version` runs on/,
    );
    await assert.rejects(
      npmFor(node, '6', { nodeBinDir, cacheDir: join(work, 'c2'), npmEnv: env('undeclared') }),
      (e: PilotError) =>
        e.code === 'npm_incompatible' &&
        /engines\.npm "6" and Node\.js \S+ exclude each other: npm 6\.13\.7: npm 6\.13\.7 does not run on Node\.js/.test(e.message),
    );
  });

  it('remembers a pairing on this machine for PILOT_NPM_PAIRING_TTL: the next build does not ask the registry', async () => {
    const cacheDir = join(work, 'c5');
    const first = await npmFor(node, undefined, { nodeBinDir, cacheDir, npmEnv: env('declared') });
    // The registry is gone: the remembered pairing still serves, with the same bytes and reason.
    const closed = { ...env('declared'), npm_config_registry: 'http://127.0.0.1:9/' };
    const lines: string[] = [];
    const again = await npmFor(node, undefined, { nodeBinDir, cacheDir, npmEnv: closed, log: (l) => lines.push(l) });
    assert.deepEqual(again, first);
    assert.match(
      lines.join('\n'),
      /npm 11\.0\.0 paired with Node\.js \S+: the newest npm that runs on it \(its engines\.node ">=\d+" admits .*\), as the registry said \d+ms ago \(asked again after 24h, PILOT_NPM_PAIRING_TTL\)/,
    );
    // Another engines.npm is another question.
    await assert.rejects(
      npmFor(node, '10', { nodeBinDir, cacheDir, npmEnv: closed }),
      (e: PilotError) => e.code === 'registry_unreachable',
    );
    // Past the TTL the registry is asked again.
    const saved = process.env['PILOT_NPM_PAIRING_TTL'];
    process.env['PILOT_NPM_PAIRING_TTL'] = '0s';
    try {
      await new Promise((r) => setTimeout(r, 5));
      await assert.rejects(
        npmFor(node, undefined, { nodeBinDir, cacheDir, npmEnv: closed }),
        (e: PilotError) => e.code === 'registry_unreachable',
      );
    } finally {
      if (saved === undefined) delete process.env['PILOT_NPM_PAIRING_TTL'];
      else process.env['PILOT_NPM_PAIRING_TTL'] = saved;
    }
    // An npm whose files changed since its check is checked again (and discarded when broken): not trusted from the memo.
    rmSync(join(cacheDir, 'npm', first.digest.slice(7), 'package', 'bin', 'npm-cli.js'));
    const healed = await npmFor(node, undefined, { nodeBinDir, cacheDir, npmEnv: env('declared') });
    assert.equal(healed.digest, first.digest);
  });

  it('refuses a tampered npm tarball', async () => {
    await assert.rejects(
      npmFor(node, undefined, { nodeBinDir, cacheDir: join(work, 'c3'), npmEnv: env('tampered') }),
      (e: PilotError) => e.code === 'digest_mismatch',
    );
  });

  it("registry unreachable: this machine's npm when its engines admit the node (a warning), else a clear error", async () => {
    const closed = { ...env('declared'), npm_config_registry: 'http://127.0.0.1:9/' };
    const host = hostNpm();
    assert.ok(host?.enginesNode, 'the machine running the tests has npm beside its node');
    const lines: string[] = [];
    assert.equal(
      await pairNpm(node, undefined, { nodeBinDir, cacheDir: join(work, 'c4'), npmEnv: closed, log: (l) => lines.push(l) }),
      undefined,
    );
    assert.match(
      lines.join('\n'),
      new RegExp(`warning: cannot pair an npm from the registry .*; using this machine's npm ${host.version.replaceAll('.', '\\.')}`),
    );
    await assert.rejects(
      pairNpm('4.9.1', undefined, { nodeBinDir, cacheDir: join(work, 'c4'), npmEnv: closed }),
      (e: PilotError) =>
        e.code === 'registry_unreachable' &&
        /this machine's npm \S+ does not run on Node\.js 4\.9\.1, so no npm can be paired with it/.test(e.message),
    );
    await assert.rejects(
      pairNpm(node, '11', { nodeBinDir, cacheDir: join(work, 'c4'), npmEnv: closed }),
      (e: PilotError) => e.code === 'registry_unreachable',
    );
  });
});
