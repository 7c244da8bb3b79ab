/** Test-only: the artifact routes on a real Fastify server on 127.0.0.1, over a temp folder. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { FsBlobStore } from './blob-store.js';
import type { BlobStore } from './blob-port.js';
import { installErrorHandling } from '../control/http-errors.js';
import { MemoryArtifactMetaStore } from './meta.js';
import { registerArtifactRoutes } from './routes.js';
import { installLingeringClose } from '../http/early-answer.js';

export interface TestServer<B extends BlobStore = FsBlobStore> {
  readonly url: string;
  readonly root: string;
  readonly blobs: B;
  readonly meta: MemoryArtifactMetaStore;
  readonly app: FastifyInstance;
  /** Authorization headers received, in order. */
  readonly authHeaders: (string | undefined)[];
  close(): Promise<void>;
}

/**
 * Start a server like the control plane's (1 MiB JSON body limit, catalogue error answers), over a
 * filesystem store in a temp folder, or over `blobs` (another adapter).
 */
export async function startTestServer(opts?: { maxBytes?: number }): Promise<TestServer>;
export async function startTestServer<B extends BlobStore>(opts: { maxBytes?: number; blobs: B }): Promise<TestServer<B>>;
export async function startTestServer(opts: { maxBytes?: number; blobs?: BlobStore } = {}): Promise<TestServer<BlobStore>> {
  const root = await mkdtemp(join(tmpdir(), 'pilot-artifacts-'));
  const blobs = opts.blobs ?? new FsBlobStore(join(root, 'store'));
  const meta = new MemoryArtifactMetaStore();
  const app = Fastify({ bodyLimit: 1024 * 1024, logger: false });
  const authHeaders: (string | undefined)[] = [];
  app.addHook('onRequest', async (req) => {
    authHeaders.push(req.headers.authorization);
  });
  installErrorHandling(app); // the server's own error mapping, so tests see what users see
  installLingeringClose(app); // as the control plane's server does
  registerArtifactRoutes(app, { blobs, meta, maxBytes: opts.maxBytes ?? 64 * 1024 * 1024 });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    url,
    root,
    blobs,
    meta,
    app,
    authHeaders,
    async close() {
      await app.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}
