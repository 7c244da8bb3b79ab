/** The registry's tarball of a package (a runtime, an npm), verified and kept in this machine's cache. */
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isPilotError, fail } from '../core/errors.js';
import type { LocalRuntimeCache } from './local-cache.js';
import type { NpmRegistry } from './npm-registry.js';
import { nearestVersions } from './resolve.js';
import { checkIntegrity, hashFile } from './runtime-package.js';

/**
 * The registry's tarball of pkg@version, checked against the integrity the registry publishes now.
 * A tarball already in this machine's cache is used when it still matches; otherwise npm pack
 * fetches it (through npm's own cache). A mismatch is refused and the file removed.
 */
export async function fetchFromRegistry(
  registry: NpmRegistry,
  cache: LocalRuntimeCache,
  pkg: string,
  version: string,
  log: (l: string) => void,
): Promise<{ file: string; digest: string; integrity: string; size: number; origin: string }> {
  const url = await registry.registryUrl();
  const dist = await registry.dist(pkg, version).catch(async (e: unknown) => {
    if (!(isPilotError(e) && e.code === 'node_version_not_found')) throw e;
    const near = nearestVersions(await registry.versions(pkg).catch(() => []), version);
    throw fail.registryHasNoNodeOrNpm({ url, version, pkg, nearest: near }, { details: { registry: url, nearest: near } });
  });
  const file = cache.tarballPath(pkg, version);
  const cached = await hashFile(file).catch(() => undefined);
  if (cached && cached.integrity === dist.integrity) {
    log(`    ${pkg}@${version}: tarball cached on this machine, integrity matches ${url}`);
    return { file, ...cached, origin: url };
  }
  log(`    downloading ${pkg}@${version} from ${url} (npm pack)`);
  const tmp = await mkdtemp(join(cache.downloadsDir(), 'pack-'));
  try {
    const packed = await registry.pack(pkg, version, tmp);
    const h = await hashFile(packed);
    checkIntegrity(`${pkg}@${version} from ${url}`, h.integrity, dist.integrity);
    await rename(packed, file);
    return { file, ...h, origin: url };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
