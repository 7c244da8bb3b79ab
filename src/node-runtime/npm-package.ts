/**
 * One npm package (the registry's npm@VERSION tarball) unpacked beside a pinned runtime:
 *
 *   npm/<sha256 hex>/package/bin/npm-cli.js   npm itself
 *   npm/<sha256 hex>/bin/npm -> ../package/bin/npm-cli.js, bin/npx -> ../package/bin/npx-cli.js
 *
 * `bin` goes on PATH after the runtime's bin: `npm` is the paired npm, and its
 * `#!/usr/bin/env node` finds the pinned node. (npm's own bin/npm shell script looks for
 * node_modules/npm beside itself, which only a global install has: hence the links.)
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { extractArtifact } from '../artifacts/safe-extract.js';
import { fail } from '../core/errors.js';
import { runCommand } from '../os/exec.js';

export interface UnpackedNpm {
  /** Folder with `npm` and `npx`: PATH, right after the runtime's bin. */
  readonly binDir: string;
  readonly cli: string;
}

export function npmLayout(dir: string): UnpackedNpm {
  return { binDir: join(dir, 'bin'), cli: join(dir, 'package', 'bin', 'npm-cli.js') };
}

/** Unpack npm@version into `dest` (must not exist), link its commands, and check it runs on the node. */
export async function unpackNpm(tgz: string, dest: string, expect: { version: string; nodeBinDir: string }): Promise<UnpackedNpm> {
  await extractArtifact(tgz, dest);
  let meta: { name?: unknown; version?: unknown };
  try {
    meta = JSON.parse(await readFile(join(dest, 'package', 'package.json'), 'utf8')) as typeof meta;
  } catch (e) {
    throw fail.npmPackageUnreadable({ message: (e as Error).message });
  }
  if (meta.name !== 'npm' || meta.version !== expect.version) {
    throw fail.npmTarballMismatch({ name: String(meta.name), version: String(meta.version), expected: expect.version });
  }
  const l = npmLayout(dest);
  await mkdir(l.binDir, { recursive: true });
  for (const [cmd, file] of [
    ['npm', 'npm-cli.js'],
    ['npx', 'npx-cli.js'],
  ] as const) {
    const target = join(dest, 'package', 'bin', file);
    if (!existsSync(target)) continue; // npx arrived with npm 5.2
    await chmod(target, 0o755);
    await symlink(join('..', 'package', 'bin', file), join(l.binDir, cmd));
  }
  return checkNpm(dest, expect);
}

/**
 * npm must print its own version when run by the pinned node (`npm --version`). An npm that cannot
 * run there (a syntax its node does not know, npm's own "known broken" check) is npm_incompatible.
 */
export async function checkNpm(dir: string, expect: { version: string; nodeBinDir: string }): Promise<UnpackedNpm> {
  const l = npmLayout(dir);
  if (!existsSync(join(l.binDir, 'npm'))) throw fail.npmIncomplete({ version: expect.version, dir });
  const env = { PATH: `${expect.nodeBinDir}:/usr/bin:/bin`, HOME: process.env['HOME'] ?? tmpdir(), npm_config_update_notifier: 'false' };
  const r = await runCommand([join(expect.nodeBinDir, 'node'), l.cli, '--version'], {
    cwd: dir,
    env,
    timeoutMs: 60_000,
    maxOutputTail: 20,
  });
  const out = r.tail.join('\n').trim();
  if (r.code !== 0 || out !== expect.version) {
    const node = await nodeVersionOf(expect.nodeBinDir);
    const why =
      r.code !== 0
        ? (r.tail.find((line) => /Error|ERROR|not (yet )?supported|known not to run/.test(line)) ?? r.tail.at(-1) ?? `exit code ${r.code}`)
        : `it printed ${JSON.stringify(out.slice(0, 200))}`;
    throw fail.npmDoesNotRun(
      { version: expect.version, node, why: why.trim().slice(0, 300) },
      { details: { npm: expect.version, node, output: r.tail.slice(-10), signal: r.signal } },
    );
  }
  return l;
}

async function nodeVersionOf(binDir: string): Promise<string> {
  const r = await runCommand([join(binDir, 'node'), '--version'], { cwd: binDir, env: {}, timeoutMs: 30_000, maxOutputTail: 2 }).catch(
    () => undefined,
  );
  return r?.code === 0 ? (r.tail[0] ?? '').trim().replace(/^v/, '') : 'in ' + binDir;
}
