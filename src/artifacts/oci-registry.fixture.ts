/** Test support: reaching into a test docker-registry (src/docker/test-registry.ts) from behind its API. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REGISTRY_BIN, type TestRegistry } from '../docker/test-registry.js';

/** The file a docker-registry keeps a blob's bytes in. */
export function registryBlobFile(reg: TestRegistry, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(reg.dir, 'data', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
}

/** `docker-registry garbage-collect --delete-untagged` on the registry's configuration (the registry stopped). */
export async function registryGarbageCollect(reg: TestRegistry): Promise<string> {
  const r = spawnSync(REGISTRY_BIN, ['garbage-collect', '--delete-untagged', join(reg.dir, 'config.yml')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`garbage-collect failed: ${r.stderr}`);
  return r.stdout;
}
