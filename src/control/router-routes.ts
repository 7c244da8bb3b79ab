/**
 * The routing-table feed (router/table-feed.ts) as an API route: `POST /api/v1/router/sync` with
 * the router token ($PILOT_HOME/router-token) or the admin token. A router process reports the
 * table version it applied and its in-flight counts, and gets the new table when there is one,
 * held up to `waitMs` otherwise. A node's router (`pilot agent --router-port`, router/node-router.ts)
 * uses the same route with its node's credential: it reports under the id `node:<node id>` and says
 * where its traffic figures are (`traffic: { url, token }`, a token of its own, kept in memory). The
 * admin token is accepted (tools, tests) as the local router. The table is
 * core/routes.ts's `Route[]` for a router that sends `x-pilot-routes: 2`, the old shape otherwise
 * (router/legacy-table.ts).
 *
 * Certificates ride in the same answer (`tls: { version, bundle }`) when the router sent a
 * `tlsVersion` that is not the current one: one authenticated channel, one long poll woken by
 * either change, one saved copy per kind beside the other; a second endpoint would need its own
 * poll loop, its own retries and its own authentication for no gain.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { fail } from '../core/errors.js';
import { LOCAL_ROUTER, type TableFeed } from '../router/table-feed.js';
import { ROUTES_FORMAT, ROUTES_FORMAT_HEADER, toLegacyRoutes } from '../router/legacy-table.js';
import { bearer, tokensEqual } from '../api/auth.js';

const SyncBody = Type.Object(
  {
    version: Type.String({ maxLength: 100 }),
    waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 30_000 })),
    inflight: Type.Optional(Type.Record(Type.String({ maxLength: 200 }), Type.Integer({ minimum: 0 }))),
    traffic: Type.Optional(
      Type.Object(
        { url: Type.String({ pattern: '^https?://', maxLength: 300 }), token: Type.String({ minLength: 16, maxLength: 200 }) },
        { additionalProperties: false },
      ),
    ),
    /** The certificates' version the router applied ('' for none yet); absent: it takes no certificates. */
    tlsVersion: Type.Optional(Type.String({ maxLength: 100 })),
    /** Where the router listens (shown by `pilot nodes`). */
    self: Type.Optional(
      Type.Object(
        {
          port: Type.Integer({ minimum: 0, maximum: 65535 }),
          httpsPort: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export function registerRouterRoutes(
  app: FastifyInstance,
  deps: {
    feed: TableFeed;
    tokens: () => readonly string[];
    /** The node whose credential this is (a node's router), if any. */
    nodeByCredential?: (token: string) => Promise<{ id: string } | undefined>;
  },
): void {
  const routerOf = new WeakMap<object, string>();
  // Authenticated on request, before the body is validated: an unauthenticated caller learns nothing of its shape.
  const onRequest = async (req: { headers: { authorization?: string | undefined } }): Promise<void> => {
    const token = bearer(req.headers.authorization);
    if (token !== undefined && deps.tokens().some((t) => tokensEqual(token, t))) {
      routerOf.set(req, LOCAL_ROUTER);
      return;
    }
    const node = token === undefined ? undefined : await deps.nodeByCredential?.(token);
    if (node === undefined) throw fail.invalidRouterToken();
    routerOf.set(req, `node:${node.id}`);
  };
  app.post<{ Body: Static<typeof SyncBody> }>('/api/v1/router/sync', { schema: { body: SyncBody }, onRequest }, async (req) => {
    const router = routerOf.get(req) ?? LOCAL_ROUTER;
    // Only a node router says where its figures are; the local one is read through router.json.
    const traffic = router === LOCAL_ROUTER ? undefined : req.body.traffic;
    const { tlsVersion, self } = req.body;
    if (req.body.inflight || router !== LOCAL_ROUTER)
      deps.feed.report(req.body.version, req.body.inflight ?? {}, router, { traffic, tlsVersion, self });
    // Certificates and keys go only to an authenticated router that asks for them (tlsVersion).
    const answer = await deps.feed.poll(req.body.version, req.body.waitMs ?? 0, tlsVersion);
    // A router started before weighted backends (adopted across an upgrade) reads the old shape.
    if (answer.routes === undefined || req.headers[ROUTES_FORMAT_HEADER] === ROUTES_FORMAT) return answer;
    return { ...answer, routes: toLegacyRoutes(answer.routes) };
  });
}
