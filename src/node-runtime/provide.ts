/**
 * The build machine's half: which exact Node.js the app gets, and that runtime on this machine,
 * recorded in the artifact repository for the whole fleet. Runs at the start of the build step,
 * so every failure here ends the run before anything is built.
 *
 *   wanted (pilot.yaml, .node-version, .nvmrc, engines.node; none: the builder's own version)
 *     └─► exact version (a range is resolved against the registry's list)
 *           ├─ recorded in the control plane? ─► this machine's cache, else download the blob (sha256-verified)
 *           └─ not yet ─► npm view dist.integrity ─► tarball (local cache, else npm pack)
 *                         ─► sha512 must match ─► unpack + `node --version` ─► upload blob ─► record
 *     └─► end of life? a warning in the run log (eol.ts)
 *     └─► npm paired with it (provide-npm.ts: npm's engines.node, the app's engines.npm), a blob too
 */
import { ArtifactClient } from '../artifacts/client.js';
import { isPilotError } from '../core/errors.js';
import type { NodeRuntimeRef } from '../core/types.js';
import type { ApiClient } from '../api/client.js';
import type { NodeRuntimeRecord } from '../store/store.js';
import { readAppNodeFiles } from './app-files.js';
import { LocalRuntimeCache } from './local-cache.js';
import { NpmRegistry, npmEnv } from './npm-registry.js';
import { nodePlatform, runtimePackage, type NodePlatform } from './platform.js';
import { eolWarning } from './eol.js';
import { pairNpm, type PairedNpm } from './provide-npm.js';
import { fetchFromRegistry } from './registry-fetch.js';
import { describeSource, exactVersion, resolveVersion, wantedNode, type WantedNode } from './resolve.js';
import type { UnpackedRuntime } from './runtime-package.js';

/** Source recorded when the app names no version: the node that ran the build. */
export const BUILDER_SOURCE = 'builder';

export interface ProvideRequest {
  readonly app: string;
  readonly commit: string;
  readonly appDir: string;
  /** pilot.yaml `node`. */
  readonly configNode: string | undefined;
  readonly api: ApiClient;
  readonly cacheDir: string;
  readonly log: (line: string) => void;
  readonly signal?: AbortSignal | undefined;
  /** Injectable for tests: the machine's (platform, arch). */
  readonly machine?: { readonly platform: string; readonly arch: string };
  /** The builder's own Node.js version (default: the running one). */
  readonly builderVersion?: string;
  /** npm's environment (default: this process's, minus PILOT_*). */
  readonly npmEnv?: Record<string, string>;
  /** `pilot run --node VERSION`: overrides what the app says (a trial; source `--node "…"`). */
  readonly override?: string | undefined;
  /** For the EOL check (default: Date.now()). */
  readonly now?: number;
}

export interface ProvidedRuntime {
  readonly ref: NodeRuntimeRef;
  readonly runtime: UnpackedRuntime;
  /** The npm paired with it; undefined: this machine's own (registry unreachable, see pairNpm). */
  readonly npm: PairedNpm | undefined;
}

/**
 * Resolve, fetch (once for the fleet), verify and unpack the app's Node.js runtime. Undefined only
 * when the app names no version and the builder's own cannot be had (unsupported platform, npm
 * registry unreachable and never recorded): the build then uses the machine's node and the
 * revision is not pinned, as before pinning existed; the log says so.
 */
export async function provideNodeRuntime(req: ProvideRequest): Promise<ProvidedRuntime | undefined> {
  const files = await readAppNodeFiles(req.appDir, req.configNode);
  const override = req.override?.trim();
  const wanted = override ? { spec: override, file: '--node' as const } : wantedNode(files);
  if (wanted !== undefined) return provide(req, wanted, files.enginesNpm);
  try {
    return await provide(req, undefined, files.enginesNpm);
  } catch (e) {
    if (!(isPilotError(e) && (e.code === 'registry_unreachable' || e.code === 'unsupported_platform'))) throw e;
    req.log(`    warning: the builder's Node.js cannot be pinned (${e.message}); building and running with each machine's own node`);
    req.log('    (name a version in pilot.yaml `node`, .node-version, .nvmrc or engines.node, or `pilot runtimes add`, to pin one)');
    return undefined;
  }
}

async function provide(req: ProvideRequest, wanted: WantedNode | undefined, enginesNpm: string | undefined): Promise<ProvidedRuntime> {
  const platform = nodePlatform(req.machine?.platform, req.machine?.arch);
  const pkg = runtimePackage(platform);
  const cache = LocalRuntimeCache.shared(req.cacheDir);
  const env = { ...(req.npmEnv ?? npmEnv()) };
  // Pinning the builder's version is best effort: no long retries against a registry that is not there.
  if (wanted === undefined && env['npm_config_fetch_retries'] === undefined && env['NPM_CONFIG_FETCH_RETRIES'] === undefined)
    env['npm_config_fetch_retries'] = '0';
  const registry = new NpmRegistry(cache.dir, env, req.signal);

  let version: string;
  let source: string;
  if (wanted === undefined) {
    // Same commit, same runtime: a redeploy of a commit pinned by its builder stays identical.
    const previous = await previousBuilderPin(req.api, req.app, req.commit);
    version = previous ?? req.builderVersion ?? process.versions.node;
    source = BUILDER_SOURCE;
    req.log(
      `    no Node.js version named (pilot.yaml node, .node-version, .nvmrc, engines.node): pinning ${version}, ${previous ? 'as the earlier deploy of this commit did' : 'the version of the node that builds it'}`,
    );
  } else {
    source = describeSource(wanted);
    const exact = exactVersion(wanted.spec);
    if (exact !== undefined) version = exact;
    else {
      const url = await registry.registryUrl();
      req.log(`    resolving ${source} against ${pkg} on ${url}`);
      version = resolveVersion(wanted, await registry.versions(pkg), `the npm registry ${url} (package ${pkg})`);
    }
  }

  const recorded = await lookup(req.api, version, platform);
  let runtime: UnpackedRuntime;
  let digest: string;
  if (recorded) {
    digest = recorded.digest;
    const here = cache.has(digest);
    runtime = await cache.ensureFromRepository(digest, { pkg, version }, () => new ArtifactClient(req.api.servers, req.api.token));
    req.log(`    Node.js ${version} (${platform}) ${here ? 'cached on this machine' : 'fetched from the artifact repository'}: ${digest}`);
  } else {
    const fetched = await fetchFromRegistry(registry, cache, pkg, version, req.log);
    digest = fetched.digest;
    runtime = await cache.ensure(digest, { pkg, version }, () => Promise.resolve(fetched.file));
    const up = await new ArtifactClient(req.api.servers, req.api.token).upload(fetched.file, digest);
    const rec = await req.api.call<{ runtime: NodeRuntimeRecord }>('PUT', `/api/v1/runtimes/node/${version}`, {
      platform,
      digest,
      integrity: fetched.integrity,
      origin: fetched.origin,
    });
    req.log(
      `    Node.js ${version} (${platform}) ${up.uploaded ? `published to the artifact repository (${(fetched.size / 1024 / 1024).toFixed(1)} MB)` : 'already in the artifact repository'}: ${rec.runtime.digest}`,
    );
  }
  const eol = eolWarning(version, req.now ?? Date.now());
  if (eol !== undefined) req.log(`    ${eol}`);
  const npm = await pairNpm(version, enginesNpm, {
    nodeBinDir: runtime.binDir,
    cacheDir: req.cacheDir,
    api: req.api,
    log: req.log,
    npmEnv: env,
    signal: req.signal,
  });
  return { ref: { version, digest, source, ...(npm ? { npm: { version: npm.version, digest: npm.digest } } : {}) }, runtime, npm };
}

async function previousBuilderPin(api: ApiClient, app: string, commit: string): Promise<string | undefined> {
  const res = await api
    .call<{ revisions: { commit: string; node: NodeRuntimeRef | null }[] }>('GET', `/api/v1/apps/${encodeURIComponent(app)}`)
    .catch((e: unknown) => {
      if (isPilotError(e) && e.code === 'app_not_found') return undefined;
      throw e;
    });
  return res?.revisions.find((r) => r.commit === commit && r.node?.source === BUILDER_SOURCE)?.node?.version;
}

async function lookup(api: ApiClient, version: string, platform: NodePlatform): Promise<NodeRuntimeRecord | undefined> {
  try {
    return (await api.call<{ runtime: NodeRuntimeRecord }>('GET', `/api/v1/runtimes/node/${version}?platform=${platform}`)).runtime;
  } catch (e) {
    if (isPilotError(e) && e.code === 'not_found') return undefined;
    throw e;
  }
}
