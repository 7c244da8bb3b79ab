/**
 * The app's package manager on the build machine, without anyone installing it by hand (issue 10.3).
 *
 *   wanted (package-manager.ts) ─► exact version (a range: `npm view PKG versions`, highest match)
 *     ├─ cached on this machine (<cache>/<name>/<version>, checked once) ─► shims
 *     └─ not yet: `npm view PKG@V dist` (no such version: package_manager_not_found, before any install)
 *          ├─ corepack of the node running Pilot (Node ≥ 16.9): `corepack install -g name@V[+hash]`
 *          │    COREPACK_HOME=<cache>/corepack, COREPACK_NPM_REGISTRY = the user's npm registry
 *          └─ else, or when corepack fails: `npm pack PKG@V` through the user's npm,
 *               sha512 checked against the registry's dist.integrity, unpacked safely
 *          ─► `node <entry> --version` must print V ─► <cache>/<name>/<version> ─► shims
 *
 * Shims: <cache>/shims/<name>-<version>/{yarn,yarnpkg | pnpm,pnpx | npm,npx}, tiny sh scripts that
 * exec `node <entry>`: `node` is looked up on the build's PATH, so the pinned runtime runs them.
 * The shims folder goes first on the build's PATH; the app's own scripts that call `yarn` get it too.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { appendFile, chmod, cp, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import semver from 'semver';
import { extractArtifact } from '../artifacts/safe-extract.js';
import { isPilotError, type PilotError, fail } from '../core/errors.js';
import { NpmRegistry } from '../node-runtime/npm-registry.js';
import { nearestVersions } from '../node-runtime/resolve.js';
import { checkIntegrity, hashFile } from '../node-runtime/runtime-package.js';
import { runCommand } from '../os/exec.js';
import { distPackage, type PackageManager, type WantedPackageManager } from '../workspace/package-manager.js';

export interface ProvidePackageManagerRequest {
  readonly wanted: WantedPackageManager;
  /** Pilot's cache folder for package managers (default beside the runtimes: <runtime cache>/package-managers). */
  readonly cacheDir: string;
  /** The user's npm environment (npmrc files, proxies, CA): npm and corepack run with it. */
  readonly npmEnv: Record<string, string>;
  readonly log: (line: string) => void;
  readonly signal?: AbortSignal | undefined;
  /** corepack's script (default: the one shipped with the node running Pilot); null: do not use corepack. */
  readonly corepack?: string | null;
}

export interface ProvidedPackageManager {
  readonly pm: PackageManager;
  /** Folder to put first on the build's PATH. */
  readonly binDir: string;
  /** How it got here: cached, corepack, registry. */
  readonly via: 'cache' | 'corepack' | 'registry';
}

/** Entry files to look for in an unpacked package (corepack's layout for berry holds yarn.js at the top). */
const ENTRIES: Record<string, readonly string[]> = {
  npm: ['bin/npm-cli.js'],
  pnpm: ['bin/pnpm.cjs', 'bin/pnpm.js'],
  yarn: ['bin/yarn.js', 'yarn.js'],
};
/** Commands each manager provides, with the entry (relative to the package) each runs. */
function commands(pm: PackageManager, entry: string, root: string): [string, string][] {
  switch (pm.name) {
    case 'npm':
      return [
        ['npm', entry],
        ['npx', join(root, 'bin/npx-cli.js')],
      ];
    case 'pnpm':
      return [
        ['pnpm', entry],
        ['pnpx', join(root, 'bin/pnpx.cjs')],
      ];
    case 'yarn':
      return [
        ['yarn', entry],
        ['yarnpkg', entry],
      ];
  }
}

/** Where a build machine keeps package managers: $PILOT_PACKAGE_MANAGER_CACHE, else beside its Node.js runtimes. */
export function packageManagerCacheDir(runtimeCacheDir: string, env: NodeJS.ProcessEnv = process.env): string {
  return env['PILOT_PACKAGE_MANAGER_CACHE'] ?? join(runtimeCacheDir, 'package-managers');
}

/** The corepack shipped with the node running Pilot, if any (Node ≥ 16.9 ships it in lib/node_modules). */
export function bundledCorepack(execPath = process.execPath): string | undefined {
  const file = join(dirname(execPath), '..', 'lib', 'node_modules', 'corepack', 'dist', 'corepack.js');
  return existsSync(file) ? file : undefined;
}

/** Resolve, fetch (once per machine), check and expose the wanted package manager. */
export async function providePackageManager(req: ProvidePackageManagerRequest): Promise<ProvidedPackageManager> {
  await mkdir(req.cacheDir, { recursive: true });
  const registry = new NpmRegistry(req.cacheDir, req.npmEnv, req.signal);
  const pm = await resolveWanted(req.wanted, registry);
  const dir = join(req.cacheDir, pm.name, pm.version);
  // A cached copy serves an app naming a hash only when that hash was verified for it (or matches
  // its entry file); otherwise the fill below fetches and verifies again.
  if (existsSync(join(dir, '.pilot-checked')) && (await cachedHashOk(dir, pm, req.wanted.hash))) {
    return { pm, binDir: await writeShims(req.cacheDir, pm, dir), via: 'cache' };
  }
  const { pkg } = distPackage(pm);
  const url = await registry.registryUrl();
  // Asked before anything is fetched, so a version that does not exist fails here, in clear words.
  const dist = await registry.dist(pkg, pm.version).catch(async (e: unknown) => {
    if (isPilotError(e) && e.code === 'node_version_not_found') throw await notFound(registry, req.wanted, pm, url);
    throw e;
  });
  let via: ProvidedPackageManager['via'] = 'registry';
  const corepack = req.corepack === undefined ? bundledCorepack() : (req.corepack ?? undefined);
  let unpacked: string | undefined;
  if (corepack !== undefined) {
    unpacked = await viaCorepack(req, corepack, pm, url).catch((e: unknown) => {
      req.log(`    corepack could not provide ${pm.name}@${pm.version} (${(e as Error).message}); fetching it from ${url} instead`);
      return undefined;
    });
    if (unpacked !== undefined) via = 'corepack';
  }
  const tmp = await mkdtemp(join(req.cacheDir, `.${pm.name}-${pm.version}-`));
  const verified: string[] = req.wanted.hash === undefined ? [] : [req.wanted.hash]; // corepack checks it; the registry path below too
  try {
    if (unpacked !== undefined) {
      await cp(unpacked, join(tmp, 'package'), { recursive: true });
    } else {
      req.log(`    downloading ${pkg}@${pm.version} from ${url} (npm pack)`);
      const tgz = await registry.pack(pkg, pm.version, tmp);
      const h = await hashFile(tgz);
      checkIntegrity(`${pkg}@${pm.version} from ${url}`, h.integrity, dist.integrity);
      verified.push(`sha512.${Buffer.from(h.integrity.slice('sha512-'.length), 'base64').toString('hex')}`);
      await extractArtifact(tgz, join(tmp, 'x'));
      // npm strips a tarball's first folder whatever its name (`package/` mostly; old yarn 1 releases differ).
      const tops = await readdir(join(tmp, 'x'), { withFileTypes: true });
      if (tops.length !== 1 || !tops[0]!.isDirectory()) throw fail.packageManagerLayout({ pkg, version: pm.version, url });
      const root = join(tmp, 'x', tops[0]!.name);
      // corepack hashes what it downloads: the npm tarball (pnpm, yarn 1), or yarn berry's single
      // file (repo.yarnpkg.com's yarn.js, the same bytes as @yarnpkg/cli-dist's bin/yarn.js).
      await checkHash(req.wanted, pm, [tgz, ...ENTRIES[pm.name]!.map((rel) => join(root, rel)).filter((f) => existsSync(f))]);
      await rename(root, join(tmp, 'package'));
    }
    const entry = findEntry(join(tmp, 'package'), pm);
    await checkRuns(entry, pm, req);
    await writeFile(join(tmp, 'package', '.pilot-checked'), `${new Date().toISOString()}\n`);
    await writeFile(join(tmp, 'package', HASHES), verified.map((v) => `${v}\n`).join(''));
    await mkdir(dirname(dir), { recursive: true });
    // Another build may have finished the same version meanwhile (or an earlier fill without this
    // hash): its copy is as good as ours, and now known to match this hash too.
    await rename(join(tmp, 'package'), dir).catch(async (e: NodeJS.ErrnoException) => {
      if (!existsSync(join(dir, '.pilot-checked'))) throw e;
      if (verified.length > 0) await appendFile(join(dir, HASHES), verified.map((v) => `${v}\n`).join(''));
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return { pm, binDir: await writeShims(req.cacheDir, pm, dir), via };
}

/** The exact version: packageManager's as is; a range resolved against the registry's list (yarn 2+ is another package). */
async function resolveWanted(w: WantedPackageManager, registry: NpmRegistry): Promise<PackageManager> {
  const exact = semver.valid(w.spec);
  if (exact !== null) return { name: w.name, version: exact };
  const range = semver.validRange(w.spec);
  if (range === null) throw fail.invalidManagerSpec({ source: w.source });
  const packages = w.name === 'yarn' ? ['yarn', '@yarnpkg/cli-dist'] : [w.name];
  const seen: string[] = [];
  for (const pkg of packages) {
    const versions = await registry.versions(pkg);
    seen.push(...versions);
    const best = semver.maxSatisfying(
      versions.filter((v) => semver.valid(v) !== null),
      range,
    );
    if (best !== null) return { name: w.name, version: best };
  }
  const url = await registry.registryUrl();
  const near = nearestVersions(seen, w.spec);
  throw fail.managerVersionNotFound({ name: w.name, source: w.source, url, nearest: near }, { details: { registry: url, nearest: near } });
}

async function notFound(registry: NpmRegistry, w: WantedPackageManager, pm: PackageManager, url: string): Promise<PilotError> {
  const { pkg } = distPackage(pm);
  const near = nearestVersions(await registry.versions(pkg).catch(() => []), pm.version);
  return fail.managerNotOnRegistry(
    { source: w.source, url, name: pm.name, version: pm.version, pkg, nearest: near },
    { details: { registry: url, nearest: near } },
  );
}

/** corepack fetches (and checks, with its own keys and packageManager's hash) into COREPACK_HOME; the unpacked folder. */
async function viaCorepack(req: ProvidePackageManagerRequest, corepack: string, pm: PackageManager, registryUrl: string): Promise<string> {
  const home = join(req.cacheDir, 'corepack');
  const spec = `${pm.name}@${pm.version}${req.wanted.hash === undefined ? '' : `+${req.wanted.hash}`}`;
  const env: Record<string, string> = {
    ...req.npmEnv,
    COREPACK_HOME: home,
    COREPACK_ENABLE_DOWNLOAD_PROMPT: '0',
    COREPACK_ENABLE_AUTO_PIN: '0',
    COREPACK_ENABLE_STRICT: '0',
  };
  // corepack reads no npmrc: the registry (and CA, through NODE_EXTRA_CA_CERTS) come from the user's npm.
  env['COREPACK_NPM_REGISTRY'] ??= registryUrl.replace(/\/+$/, '');
  const lines: string[] = [];
  req.log(`    corepack install ${spec} (registry ${env['COREPACK_NPM_REGISTRY']})`);
  const r = await runCommand([process.execPath, corepack, 'install', '-g', spec], {
    cwd: req.cacheDir,
    env,
    timeoutMs: 10 * 60_000,
    maxOutputTail: 40,
    onLine: (_s, l) => lines.push(l),
    ...(req.signal ? { signal: req.signal } : {}),
  });
  if (r.code !== 0) {
    const why = lines.find((l) => /error/i.test(l)) ?? lines.at(-1) ?? `exit code ${r.code}`;
    throw new Error(
      why
        .replace(/\u001b\[[0-9;]*m/g, '')
        .trim()
        .slice(0, 300),
    );
  }
  const dir = join(home, 'v1', pm.name, pm.version);
  findEntry(dir, pm); // throws when corepack's layout is not what we know
  return dir;
}

/** Hashes (`algo.hex`) verified for a cached copy: of its tarball, or named by packageManager and checked. */
const HASHES = '.pilot-hashes';

async function cachedHashOk(dir: string, pm: PackageManager, hash: string | undefined): Promise<boolean> {
  if (hash === undefined) return true;
  const known = (await readFile(join(dir, HASHES), 'utf8').catch(() => '')).split('\n');
  if (known.includes(hash)) return true;
  const [algo, hex] = hash.split('.') as [string, string];
  try {
    const h = createHash(algo);
    await pipeline(createReadStream(findEntry(dir, pm)), h);
    return h.digest('hex') === hex;
  } catch {
    return false;
  }
}

function findEntry(root: string, pm: PackageManager): string {
  for (const rel of ENTRIES[pm.name]!) if (existsSync(join(root, rel))) return join(root, rel);
  throw new Error(`${root} holds no ${ENTRIES[pm.name]!.join(' or ')}`);
}

/**
 * packageManager's `+algo.hex`, when given, must match one of `files` (corepack hashes the archive
 * it downloads: the npm tarball, or yarn's single-file release).
 */
async function checkHash(w: WantedPackageManager, pm: PackageManager, files: readonly string[]): Promise<void> {
  if (w.hash === undefined) return;
  const [algo, hex] = w.hash.split('.') as [string, string];
  for (const f of files) {
    const h = createHash(algo);
    await pipeline(createReadStream(f), h);
    if (h.digest('hex') === hex) return;
  }
  throw fail.managerHashMismatch({ name: pm.name, version: pm.version, source: w.source });
}

/** The manager must start on this machine and say its version. */
async function checkRuns(entry: string, pm: PackageManager, req: ProvidePackageManagerRequest): Promise<void> {
  const out: string[] = [];
  const r = await runCommand([process.execPath, entry, '--version'], {
    cwd: req.cacheDir,
    env: {
      PATH: req.npmEnv['PATH'] ?? '/usr/bin:/bin',
      HOME: req.npmEnv['HOME'] ?? req.cacheDir,
      COREPACK_ENABLE_STRICT: '0',
      YARN_IGNORE_PATH: '1',
    },
    timeoutMs: 120_000,
    onLine: (_s, l) => out.push(l),
    ...(req.signal ? { signal: req.signal } : {}),
  });
  if (r.code !== 0 || !out.some((l) => l.trim() === pm.version)) {
    throw fail.managerCannotStart({ name: pm.name, version: pm.version, out: out.slice(-3).join(' ').slice(0, 300), code: r.code });
  }
}

/** sh scripts running the manager's entries with the `node` first on PATH; the folder. */
async function writeShims(cacheDir: string, pm: PackageManager, dir: string): Promise<string> {
  const entry = findEntry(dir, pm);
  const bin = join(cacheDir, 'shims', `${pm.name}-${pm.version}`);
  if (existsSync(join(bin, '.complete'))) return bin;
  if (/['\n\\]/.test(dir)) throw fail.managerCacheQuote({ dir });
  const tmp = await mkdtemp(join(cacheDir, '.shims-'));
  try {
    for (const [name, file] of commands(pm, entry, dir)) {
      if (!existsSync(file)) continue;
      await writeFile(join(tmp, name), `#!/bin/sh\nexec node '${file}' "$@"\n`);
      await chmod(join(tmp, name), 0o755);
    }
    await writeFile(join(tmp, '.complete'), '');
    await mkdir(dirname(bin), { recursive: true });
    await rename(tmp, bin).catch((e: NodeJS.ErrnoException) => {
      if (!existsSync(join(bin, '.complete'))) throw e;
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return bin;
}
