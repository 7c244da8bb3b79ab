import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { registerRouterRoutes } from './router-routes.js';
import { TableFeed } from '../router/table-feed.js';
import type { Route } from '../core/routes.js';

const routes: Route[] = [
  {
    app: 'hello',
    hosts: ['hello.localhost'],
    backends: [
      { revision: 1, weight: 100, upstreams: [{ id: 'hello-1-a', host: '127.0.0.2', port: 4000 }] },
      { revision: 2, weight: 0, upstreams: [{ id: 'hello-2-b', host: '127.0.0.3', port: 4001 }] },
    ],
  },
];

describe('POST /api/v1/router/sync', () => {
  it('answers the table with backends to a router that says it reads them, the old shape to one that does not', async () => {
    const feed = new TableFeed();
    feed.set(routes);
    const app = Fastify();
    registerRouterRoutes(app, { feed, tokens: () => ['pilot_router_t'] });
    try {
      const ask = (headers: Record<string, string>, version = '') =>
        app.inject({
          method: 'POST',
          url: '/api/v1/router/sync',
          payload: { version, waitMs: 0 },
          headers: { authorization: 'Bearer pilot_router_t', ...headers },
        });
      const now = (await ask({ 'x-pilot-routes': '2' })).json<{ version: string; routes: Route[] }>();
      assert.deepEqual(now.routes, routes);
      // A router started before weighted backends (adopted across an upgrade): only what carries weight.
      const old = (await ask({})).json<{ version: string; routes: unknown }>();
      assert.equal(old.version, now.version);
      assert.deepEqual(old.routes, [
        {
          app: 'hello',
          hosts: ['hello.localhost'],
          upstreams: [{ id: 'hello-1-a', app: 'hello', revision: 1, host: '127.0.0.2', port: 4000 }],
        },
      ]);
      // Up to date: no table in either shape.
      assert.deepEqual((await ask({}, now.version)).json(), { version: now.version });
      assert.deepEqual((await ask({ 'x-pilot-routes': '2' }, now.version)).json(), { version: now.version });
    } finally {
      await app.close();
    }
  });
});
