/**
 * REST API for pinned Node.js runtimes: the index of runtime tarballs in the artifact repository
 * (one per version and platform for the whole fleet), and which apps run on each.
 *
 *   PUT /api/v1/runtimes/node/:version   record a runtime blob (already uploaded) once
 *   GET /api/v1/runtimes/node/:version   the record, or 404
 *   GET /api/v1/runtimes                 every runtime with the apps whose active revision uses it
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { fail } from '../core/errors.js';
import type { BlobStore } from '../artifacts/blob-port.js';
import { SUPPORTED_PLATFORMS } from '../node-runtime/platform.js';
import type { NodeRuntimeRecord, Store } from '../store/store.js';

export interface RuntimeRouteDeps {
  store: Store;
  blobs: BlobStore;
}

const VERSION = /^[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,6}$/;
const PutBody = Type.Object(
  {
    platform: Type.String({ maxLength: 32 }),
    digest: Type.String({ pattern: '^sha256:[a-f0-9]{64}$' }),
    integrity: Type.Optional(Type.String({ pattern: '^sha512-[A-Za-z0-9+/]{86}==$' })),
    origin: Type.String({ minLength: 1, maxLength: 500 }),
  },
  { additionalProperties: false },
);

function version(v: string): string {
  if (!VERSION.test(v)) throw fail.notExactNodeVersion({ v: v.slice(0, 40) });
  return v;
}

function platform(p: string | undefined): string {
  const name = p ?? 'linux-x64';
  if (!(SUPPORTED_PLATFORMS as readonly string[]).includes(name)) {
    throw fail.unsupportedPlatform({ name: name.slice(0, 40), supportedPlatforms: SUPPORTED_PLATFORMS.join(', ') });
  }
  return name;
}

/** A deploy's `node` must be a recorded runtime: that version with that digest (what the pipeline records before deploying). */
export async function assertRecordedRuntime(store: Store, node: { readonly version: string; readonly digest: string }): Promise<void> {
  const same = (await store.listNodeRuntimes()).filter((r) => r.version === node.version);
  if (same.some((r) => r.digest === node.digest)) return;
  throw same.length > 0
    ? fail.runtimeRecordedOtherwise({ version: node.version, recorded: same.map((r) => r.digest).join(', '), digest: node.digest })
    : fail.runtimeNotRecorded({ version: node.version });
}

export function registerRuntimeRoutes(app: FastifyInstance, deps: RuntimeRouteDeps): void {
  const { store, blobs } = deps;

  app.put<{ Params: { version: string }; Body: Static<typeof PutBody> }>(
    '/api/v1/runtimes/node/:version',
    { schema: { body: PutBody } },
    async (req, reply) => {
      const v = version(req.params.version);
      const b = req.body;
      const p = platform(b.platform);
      const stat = await blobs.stat(b.digest);
      if (!stat) throw fail.runtimeBlobMissing({ digest: b.digest });
      const existing = await store.getNodeRuntime(v, p);
      if (existing && existing.digest !== b.digest) {
        throw fail.runtimeAlreadyRecorded({ v, p, digest: existing.digest }, { details: { recorded: existing } });
      }
      const rec = await store.putNodeRuntime({
        version: v,
        platform: p,
        digest: b.digest,
        integrity: b.integrity,
        size: stat.size,
        origin: b.origin,
        createdAt: Date.now(),
      });
      void reply.status(existing ? 200 : 201);
      return { runtime: rec, created: !existing };
    },
  );

  app.get<{ Params: { version: string }; Querystring: { platform?: string } }>('/api/v1/runtimes/node/:version', async (req) => {
    const v = version(req.params.version);
    const p = platform(req.query.platform);
    const rec = await store.getNodeRuntime(v, p);
    if (!rec) throw fail.runtimeNotCached({ v, p });
    return { runtime: rec };
  });

  app.get('/api/v1/runtimes', async () => {
    const runtimes = await store.listNodeRuntimes();
    const using = new Map<string, { apps: Set<string>; revisions: number }>();
    for (const a of await store.listApps()) {
      for (const r of await store.listRevisions(a.name)) {
        const d = r.nodeRuntime?.digest;
        if (d === undefined) continue;
        const u = using.get(d) ?? { apps: new Set<string>(), revisions: 0 };
        u.revisions++;
        if (r.number === a.activeRevision) u.apps.add(a.name);
        using.set(d, u);
      }
    }
    return {
      runtimes: runtimes.map((r: NodeRuntimeRecord) => ({
        ...r,
        apps: [...(using.get(r.digest)?.apps ?? [])].sort(),
        revisions: using.get(r.digest)?.revisions ?? 0,
      })),
    };
  });
}
