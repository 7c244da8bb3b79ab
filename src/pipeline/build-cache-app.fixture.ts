/**
 * Test and bench fixture: a Node app with a native module compiled by node-gyp from source (a
 * local package, shipped as a `file:` tarball so npm copies it into node_modules) and a
 * devDependency the build uses. The addon's install script stamps its build (time + random), so a
 * deploy can tell a module restored from the cache from one compiled again.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';

const ADDON_C = `#include <node_api.h>
static napi_value Hello(napi_env env, napi_callback_info info) {
  napi_value r;
  napi_create_string_utf8(env, "hello from C", NAPI_AUTO_LENGTH, &r);
  return r;
}
NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "hello", NAPI_AUTO_LENGTH, Hello, NULL, &fn);
  napi_set_named_property(env, exports, "hello", fn);
  return exports;
}
`;

const STAMP_JS = `require('node:fs').writeFileSync(require('node:path').join(__dirname, 'build', 'stamp.json'),
  JSON.stringify({ builtAt: Date.now(), id: require('node:crypto').randomUUID() }));
`;

/** The app's server: what the native module says, its build stamp, whether the devDependency shipped. */
export const SERVER_JS = (version: string): string => `const http = require('node:http');
const fs = require('node:fs');
const addon = require('pilot-fixture-addon');
const info = JSON.parse(fs.readFileSync('dist/info.json', 'utf8'));
http.createServer((req, res) => res.end(JSON.stringify({
  version: ${JSON.stringify(version)},
  hello: addon.hello(),
  stamp: addon.stamp,
  devShipped: fs.existsSync('node_modules/pilot-fixture-devtool'),
  builtWith: info.builtWith,
}))).listen(process.env.PORT);
`;

/** The build script: needs the devDependency, stays silent as many ms as the file `silent-ms` says, writes dist/info.json. */
const BUILD_JS = `const tool = require('pilot-fixture-devtool');
const fs = require('node:fs');
setTimeout(() => {
  fs.mkdirSync('dist', { recursive: true });
  fs.writeFileSync('dist/info.json', JSON.stringify({ builtWith: tool.name }));
}, fs.existsSync('silent-ms') ? Number(fs.readFileSync('silent-ms', 'utf8')) : 0);
`;

/** A gzip tarball of an npm package (files under package/), deterministic. */
async function packTgz(files: Record<string, string | Buffer>, out: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-fixture-pkg-'));
  try {
    for (const [f, body] of Object.entries(files)) {
      mkdirSync(join(dir, 'package', f, '..'), { recursive: true });
      writeFileSync(join(dir, 'package', f), body);
    }
    await tar.c({ gzip: true, cwd: dir, file: out, portable: true, mtime: new Date('2020-01-01T00:00:00Z') }, ['package']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface FixtureOptions {
  /** Registry dependencies besides the local ones, e.g. { express: '4.21.2' } (the bench). */
  readonly registryDeps?: Readonly<Record<string, string>>;
  /** Registry devDependencies (the bench: something big, to show what pruning saves). */
  readonly registryDevDeps?: Readonly<Record<string, string>>;
  /** Bytes of the local devDependency's payload (default 256 KiB). */
  readonly devPayloadBytes?: number;
  /** pilot.yaml text, if any. */
  readonly pilotYaml?: string;
}

/** Write the app into `dir` (which must exist) and its package-lock.json (npm, offline unless registry deps are asked for). */
export async function writeNativeApp(dir: string, name: string, opts: FixtureOptions = {}): Promise<void> {
  mkdirSync(join(dir, 'vendor'), { recursive: true });
  await packTgz(
    {
      'package.json': JSON.stringify({
        name: 'pilot-fixture-addon',
        version: '1.0.0',
        main: 'index.js',
        gypfile: true,
        scripts: { install: 'node-gyp rebuild && node stamp.js' },
      }),
      'binding.gyp': JSON.stringify({ targets: [{ target_name: 'addon', sources: ['addon.c'] }] }),
      'addon.c': ADDON_C,
      'stamp.js': STAMP_JS,
      'index.js':
        "const a = require('./build/Release/addon.node');\nmodule.exports = { hello: a.hello, stamp: require('./build/stamp.json') };\n",
    },
    join(dir, 'vendor', 'pilot-fixture-addon-1.0.0.tgz'),
  );
  await packTgz(
    {
      'package.json': JSON.stringify({ name: 'pilot-fixture-devtool', version: '1.0.0', main: 'index.js' }),
      'index.js': "module.exports = { name: 'pilot-fixture-devtool' };\n",
      'payload.bin': Buffer.alloc(opts.devPayloadBytes ?? 256 * 1024, 42),
    },
    join(dir, 'vendor', 'pilot-fixture-devtool-1.0.0.tgz'),
  );
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify(
      {
        name,
        version: '1.0.0',
        private: true,
        scripts: { start: 'node server.js', build: 'node build.js' },
        dependencies: { 'pilot-fixture-addon': 'file:vendor/pilot-fixture-addon-1.0.0.tgz', ...opts.registryDeps },
        devDependencies: { 'pilot-fixture-devtool': 'file:vendor/pilot-fixture-devtool-1.0.0.tgz', ...opts.registryDevDeps },
      },
      null,
      2,
    ),
  );
  writeFileSync(join(dir, 'server.js'), SERVER_JS('v1'));
  writeFileSync(join(dir, 'build.js'), BUILD_JS);
  writeFileSync(join(dir, '.gitignore'), 'node_modules\n');
  if (opts.pilotYaml) writeFileSync(join(dir, 'pilot.yaml'), opts.pilotYaml);
  const online = opts.registryDeps !== undefined || opts.registryDevDeps !== undefined;
  const r = spawnSync(
    'npm',
    ['install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund', ...(online ? [] : ['--offline'])],
    { cwd: dir, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } },
  );
  if (r.status !== 0) throw new Error(`npm install --package-lock-only failed: ${r.stderr}`);
}
