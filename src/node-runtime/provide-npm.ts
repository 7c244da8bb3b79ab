/**
 * The npm that goes with a pinned Node.js, on the build machine: chosen from the registry by npm's
 * own engines.node (npm-pair.ts) and the app's engines.npm, fetched like the runtime (tarball
 * checked against the registry's sha512 integrity, cached, uploaded to the artifact repository by
 * sha256 so every agent gets the same bytes), unpacked, and checked to run on that node.
 *
 *   npm view npm versions+engines ─► candidates ─► for each (best first, at most 4):
 *       tarball (cache, else npm pack; integrity) ─► unpack ─► `npm --version` on the node
 *       runs? ─► upload blob (HEAD first) ─► { version, digest, binDir }
 *       does not? ─► next candidate (npm 6.13.7 on Node 4: SyntaxError) ─► all failed: npm_incompatible
 */
import { readFileSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import semver from 'semver';
import { ArtifactClient } from '../artifacts/client.js';
import { formatDuration, parseEnvDuration } from '../core/duration.js';
import { isPilotError, fail } from '../core/errors.js';
import type { ApiClient } from '../api/client.js';
import { LocalRuntimeCache } from './local-cache.js';
import { npmCandidates, noNpmRuns } from './npm-pair.js';
import { NpmRegistry, npmEnv } from './npm-registry.js';
import { fetchFromRegistry } from './registry-fetch.js';
import { hashFile } from './runtime-package.js';

export interface PairedNpm {
  readonly version: string;
  /** sha256:<hex> of npm@version's tarball, a blob in the artifact repository. */
  readonly digest: string;
  /** Put on PATH right after the runtime's bin. */
  readonly binDir: string;
}

export interface NpmForOptions {
  /** The pinned runtime's bin folder (npm is checked to run on its node). */
  readonly nodeBinDir: string;
  readonly cacheDir: string;
  /** Where the npm tarball is published for the agents; none: not published (tests, tools). */
  readonly api?: ApiClient | undefined;
  readonly log?: ((line: string) => void) | undefined;
  readonly npmEnv?: Record<string, string> | undefined;
  readonly signal?: AbortSignal | undefined;
}

/**
 * The npm to run on Node.js `nodeVersion`: the newest whose engines.node admits it, inside the
 * app's `enginesNpm` range when there is one. For other build steps (yarn, pnpm, corepack) that
 * need "the npm for this node" too.
 */
export async function npmFor(nodeVersion: string, enginesNpm: string | undefined, opts: NpmForOptions): Promise<PairedNpm> {
  const log = opts.log ?? ((): void => undefined);
  const cache = LocalRuntimeCache.shared(opts.cacheDir);
  const remembered = await rememberedPairing(cache, nodeVersion, enginesNpm, opts).catch(() => undefined);
  if (remembered) {
    log(
      `    npm ${remembered.version} paired with Node.js ${nodeVersion}: ${pairedBecause(enginesNpm, remembered.why)}, as the registry said ${rough(Date.now() - remembered.at)} ago (asked again after ${rough(pairingTtlMs())}, PILOT_NPM_PAIRING_TTL): ${remembered.digest}`,
    );
    return { version: remembered.version, digest: remembered.digest, binDir: remembered.binDir };
  }
  const registry = new NpmRegistry(cache.dir, opts.npmEnv ?? npmEnv(), opts.signal);
  const [releases, latest] = await Promise.all([registry.npmReleases(), registry.latest('npm')]);
  const candidates = npmCandidates(releases, nodeVersion, { enginesNpm, latest });
  const tried: { version: string; error: string }[] = [];
  for (const c of candidates) {
    const fetched = await fetchFromRegistry(registry, cache, 'npm', c.version, log);
    try {
      const npm = await cache.ensureNpm(fetched.digest, { version: c.version, nodeBinDir: opts.nodeBinDir }, () =>
        Promise.resolve(fetched.file),
      );
      if (opts.api) await new ArtifactClient(opts.api.servers, opts.api.token).upload(fetched.file, fetched.digest);
      await rememberPairing(cache, nodeVersion, enginesNpm, { version: c.version, digest: fetched.digest, why: c.why }).catch(
        () => undefined,
      );
      log(`    npm ${c.version} paired with Node.js ${nodeVersion}: ${pairedBecause(enginesNpm, c.why)}: ${fetched.digest}`);
      return { version: c.version, digest: fetched.digest, binDir: npm.binDir };
    } catch (e) {
      if (!(isPilotError(e) && e.code === 'npm_incompatible')) throw e;
      log(
        `    npm ${c.version} does not run on Node.js ${nodeVersion}: ${e.message.replace(/^npm \S+ does not run on Node\.js \S+: /, '')}; trying an older one`,
      );
      tried.push({ version: c.version, error: e.message });
    }
  }
  throw noNpmRuns(nodeVersion, tried, enginesNpm);
}

/** How long a pairing is used without asking the registry again (PILOT_NPM_PAIRING_TTL, default 24h). */
export function pairingTtlMs(env: NodeJS.ProcessEnv = process.env): number {
  return parseEnvDuration(env['PILOT_NPM_PAIRING_TTL']) ?? 24 * 3_600_000;
}

const rough = (ms: number): string => (ms < 3_600_000 ? formatDuration(ms) : `${Math.round(ms / 360_000) / 10}h`);

const pairedBecause = (enginesNpm: string | undefined, why: string): string =>
  `the newest npm${enginesNpm === undefined ? '' : ` in engines.npm ${JSON.stringify(enginesNpm)}`} that runs on it (${why})`;

interface Pairing {
  readonly version: string;
  readonly digest: string;
  /** Why this one (npm-pair.ts): its engines.node, or that it ran. */
  readonly why: string;
  /** When the registry was asked (ms since the epoch). */
  readonly at: number;
}

const pairingsFile = (cache: LocalRuntimeCache): string => join(cache.dir, 'npm-pairings.json');
const pairingKey = (nodeVersion: string, enginesNpm: string | undefined): string => `${nodeVersion} ${enginesNpm ?? '*'}`;

async function readPairings(cache: LocalRuntimeCache): Promise<Record<string, Pairing>> {
  try {
    const v = JSON.parse(await readFile(pairingsFile(cache), 'utf8')) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, Pairing>) : {};
  } catch {
    return {};
  }
}

/**
 * The pairing chosen for this node and engines.npm by an earlier build on this machine, younger
 * than the TTL, whose npm is unpacked, checked and (when there is an artifact repository) in it:
 * asking the registry costs three `npm view` calls (about 1.5 s), on every build.
 */
async function rememberedPairing(
  cache: LocalRuntimeCache,
  nodeVersion: string,
  enginesNpm: string | undefined,
  opts: NpmForOptions,
): Promise<(Pairing & { binDir: string }) | undefined> {
  const p = (await readPairings(cache))[pairingKey(nodeVersion, enginesNpm)];
  if (!p || typeof p.version !== 'string' || typeof p.digest !== 'string' || typeof p.why !== 'string' || typeof p.at !== 'number')
    return undefined;
  if (Date.now() - p.at > pairingTtlMs() || p.at > Date.now() + 60_000 || !cache.hasNpm(p.digest)) return undefined;
  const tarball = cache.tarballPath('npm', p.version);
  const fetch = async (): Promise<string> => {
    // Unpacked again only from the tarball this machine verified, and only if it still hashes to the digest.
    if ((await hashFile(tarball)).digest !== p.digest) throw fail.npmCacheChanged({ version: p.version });
    return tarball;
  };
  const npm = await cache.ensureNpm(p.digest, { version: p.version, nodeBinDir: opts.nodeBinDir }, fetch);
  if (opts.api) await new ArtifactClient(opts.api.servers, opts.api.token).upload(tarball, p.digest);
  return { ...p, binDir: npm.binDir };
}

async function rememberPairing(
  cache: LocalRuntimeCache,
  nodeVersion: string,
  enginesNpm: string | undefined,
  p: Omit<Pairing, 'at'>,
): Promise<void> {
  const all = await readPairings(cache);
  all[pairingKey(nodeVersion, enginesNpm)] = { ...p, at: Date.now() };
  const tmp = `${pairingsFile(cache)}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(all, null, 2)}\n`);
  await rename(tmp, pairingsFile(cache));
}

/** This machine's own npm (beside the node running Pilot): its version and engines.node. */
export function hostNpm(): { version: string; enginesNode: string | undefined } | undefined {
  try {
    const pkg = JSON.parse(readFileSync(join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'package.json'), 'utf8')) as {
      version?: unknown;
      engines?: { node?: unknown };
    };
    if (typeof pkg.version !== 'string') return undefined;
    return { version: pkg.version, enginesNode: typeof pkg.engines?.node === 'string' ? pkg.engines.node : undefined };
  } catch {
    return undefined;
  }
}

/**
 * npmFor, or (registry unreachable, no engines.npm, and this machine's npm admits the node by its
 * own engines) undefined: build and start with each machine's own npm, with a warning, so a
 * recorded runtime still deploys offline.
 */
export async function pairNpm(nodeVersion: string, enginesNpm: string | undefined, opts: NpmForOptions): Promise<PairedNpm | undefined> {
  try {
    return await npmFor(nodeVersion, enginesNpm, opts);
  } catch (e) {
    if (!(isPilotError(e) && e.code === 'registry_unreachable') || enginesNpm !== undefined) throw e;
    const host = hostNpm();
    if (!host?.enginesNode || !semver.satisfies(nodeVersion, host.enginesNode)) {
      throw fail.noNpmToPair({ message: e.message, hostNpm: host?.version, nodeVersion, hint: e.hint }, { details: e.details });
    }
    opts.log?.(
      `    warning: cannot pair an npm from the registry (${e.message}); using this machine's npm ${host.version} (its engines.node ${JSON.stringify(host.enginesNode)} admits ${nodeVersion}), and each node's own npm for npm start`,
    );
    return undefined;
  }
}
