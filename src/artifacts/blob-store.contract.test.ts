/**
 * The blob store contract (blob-contract.fixture.ts) on every adapter: the filesystem store, and the
 * OCI store on a real registry (Debian's docker-registry, deletes enabled) with streamed monolithic
 * uploads and with 1 MiB PATCH chunks.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../http/undici.js';
import { registrySkip, startRegistry } from '../docker/test-registry.js';
import { registryBlobFile, registryGarbageCollect } from './oci-registry.fixture.js';
import { blobStoreContract } from './blob-contract.fixture.js';
import { FsBlobStore } from './blob-store.js';
import { OciBlobStore } from './oci-blob-store.js';

async function flipByte(file: string): Promise<void> {
  await chmod(file, 0o600);
  const bytes = await readFile(file);
  bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
  await writeFile(file, bytes);
}

blobStoreContract('filesystem', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pilot-blob-contract-'));
  let n = 0;
  return {
    makeStore: async () => new FsBlobStore(join(dir, `s${n++}`)),
    edges: [1024 * 1024 - 1, 1024 * 1024, 1024 * 1024 + 1, 16 * 1024 * 1024 + 1],
    corrupt: async (store, digest) => flipByte((store as FsBlobStore).path(digest)),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

for (const mode of ['monolithic', 'chunked'] as const) {
  blobStoreContract(
    `OCI registry (docker-registry, ${mode} uploads)`,
    async () => {
      const reg = await startRegistry();
      let n = 0;
      return {
        makeStore: async () =>
          new OciBlobStore({
            target: { origin: reg.url, repo: `contract/${mode}-${n++}`, display: `oci+http://${reg.address}/contract` },
            dispatcher: new Agent(),
            ...(mode === 'chunked' ? { chunked: true, chunkBytes: 1024 * 1024 } : { chunkBytes: 1024 * 1024 }),
          }),
        edges: [1024 * 1024 - 1, 1024 * 1024, 1024 * 1024 + 1, 2 * 1024 * 1024],
        corrupt: async (_store, digest) => flipByte(registryBlobFile(reg, digest)),
        // The README's procedure: the registry stopped, its garbage-collect, started again.
        heal: async () => {
          await reg.kill();
          await registryGarbageCollect(reg);
          await reg.restart();
        },
        outage: { kill: () => reg.kill(), restart: () => reg.restart(), code: 'registry_unreachable' },
        cleanup: () => reg.stop(),
      };
    },
    { skip: registrySkip, outage: true },
  );
}
