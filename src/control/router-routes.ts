/**
 * The routing-table feed (router/table-feed.ts) as an API route: `POST /api/v1/router/sync` with
 * the router token ($PILOT_HOME/router-token) or the admin token. A router process reports the
 * table version it applied and its in-flight counts, and gets the new table when there is one,
 * held up to `waitMs` otherwise. Routers on other machines will use the same route. The table is
 * core/routes.ts's `Route[]` for a router that sends `x-pilot-routes: 2`, the old shape otherwise
 * (router/legacy-table.ts).
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { fail } from '../core/errors.js';
import type { TableFeed } from '../router/table-feed.js';
import { ROUTES_FORMAT, ROUTES_FORMAT_HEADER, toLegacyRoutes } from '../router/legacy-table.js';
import { bearer, tokensEqual } from '../api/auth.js';

const SyncBody = Type.Object(
  {
    version: Type.String({ maxLength: 100 }),
    waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 30_000 })),
    inflight: Type.Optional(Type.Record(Type.String({ maxLength: 200 }), Type.Integer({ minimum: 0 }))),
  },
  { additionalProperties: false },
);

export function registerRouterRoutes(app: FastifyInstance, deps: { feed: TableFeed; tokens: () => readonly string[] }): void {
  // Authenticated on request, before the body is validated: an unauthenticated caller learns nothing of its shape.
  const onRequest = async (req: { headers: { authorization?: string | undefined } }): Promise<void> => {
    const token = bearer(req.headers.authorization);
    if (token === undefined || !deps.tokens().some((t) => tokensEqual(token, t))) {
      throw fail.invalidRouterToken();
    }
  };
  app.post<{ Body: Static<typeof SyncBody> }>('/api/v1/router/sync', { schema: { body: SyncBody }, onRequest }, async (req) => {
    if (req.body.inflight) deps.feed.report(req.body.version, req.body.inflight);
    const answer = await deps.feed.poll(req.body.version, req.body.waitMs ?? 0);
    // A router started before weighted backends (adopted across an upgrade) reads the old shape.
    if (answer.routes === undefined || req.headers[ROUTES_FORMAT_HEADER] === ROUTES_FORMAT) return answer;
    return { version: answer.version, routes: toLegacyRoutes(answer.routes) };
  });
}
