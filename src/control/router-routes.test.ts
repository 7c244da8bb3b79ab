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

  it("takes a node's credential as that node's router: its in-flight counts and traffic endpoint, never another's", async () => {
    const feed = new TableFeed({ expected: [] });
    feed.set(routes);
    const app = Fastify();
    const nodes = new Map([['pilot_node_secret_a', { id: 'a' }]]);
    registerRouterRoutes(app, { feed, tokens: () => ['pilot_router_t'], nodeByCredential: async (t) => nodes.get(t) });
    try {
      const sync = (token: string, payload: object) =>
        app.inject({
          method: 'POST',
          url: '/api/v1/router/sync',
          payload,
          headers: { authorization: `Bearer ${token}`, 'x-pilot-routes': '2' },
        });
      const traffic = { url: 'http://127.0.0.2:4567', token: 'a-token-of-24-characters' };
      const first = await sync('pilot_node_secret_a', { version: '', waitMs: 0, traffic });
      assert.equal(first.statusCode, 200);
      assert.deepEqual(first.json<{ routes: Route[] }>().routes, routes);
      assert.deepEqual(
        feed.routers().map((r) => ({ id: r.id, traffic: r.traffic })),
        [{ id: 'node:a', traffic }],
      );
      const v = first.json<{ version: string }>().version;
      assert.equal((await sync('pilot_node_secret_a', { version: v, waitMs: 0, inflight: { 'hello-1-a': 2 }, traffic })).statusCode, 200);
      assert.equal(feed.inflight('hello-1-a'), 2);
      // Unknown credential, no credential, a hostile traffic URL: refused, nothing recorded.
      assert.equal((await sync('pilot_node_secret_b', { version: v, inflight: { 'hello-1-a': 9 } })).statusCode, 401);
      const none = await app.inject({ method: 'POST', url: '/api/v1/router/sync', payload: { version: v } });
      assert.equal(none.statusCode, 401);
      const bad = await sync('pilot_node_secret_a', {
        version: v,
        traffic: { url: 'file:///etc/passwd', token: 'a-token-of-24-characters' },
      });
      assert.equal(bad.statusCode, 400);
      assert.equal(feed.inflight('hello-1-a'), 2);
      // The router token's traffic field is ignored (the local router is read through router.json).
      await sync('pilot_router_t', { version: v, waitMs: 0, inflight: {}, traffic });
      assert.deepEqual(
        feed.routers().map((r) => [r.id, r.traffic?.url]),
        [
          ['node:a', traffic.url],
          ['local', undefined],
        ],
      );
    } finally {
      await app.close();
    }
  });

  it('gives certificates and keys only to an authenticated router that asks with a stale TLS version, and records where it listens', async () => {
    const feed = new TableFeed({ expected: [] });
    feed.set(routes);
    const bundle = { certs: [{ host: 'shop.test', cert: 'CERT', key: 'KEY-SECRET' }], policies: {}, challenges: { t: 't.k' } };
    feed.setTls(bundle);
    const app = Fastify();
    const nodes = new Map([['pilot_node_secret_a', { id: 'a' }]]);
    registerRouterRoutes(app, { feed, tokens: () => ['pilot_router_t'], nodeByCredential: async (t) => nodes.get(t) });
    try {
      const sync = (token: string | undefined, payload: object) =>
        app.inject({
          method: 'POST',
          url: '/api/v1/router/sync',
          payload,
          headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'x-pilot-routes': '2' },
        });
      for (const token of [undefined, 'pilot_node_secret_b', 'pilot_router_x']) {
        const refused = await sync(token, { version: '', waitMs: 0, tlsVersion: '' });
        assert.equal(refused.statusCode, 401);
        assert.doesNotMatch(refused.body, /KEY-SECRET/);
      }
      const plain = await sync('pilot_node_secret_a', { version: '', waitMs: 0 });
      assert.equal(plain.json<{ tls?: unknown }>().tls, undefined, 'no tlsVersion: no certificates');
      const asked = await sync('pilot_node_secret_a', { version: '', waitMs: 0, tlsVersion: '', self: { port: 80, httpsPort: 443 } });
      const body = asked.json<{ version: string; tls: { version: string; bundle: unknown } }>();
      assert.deepEqual(body.tls, { version: feed.tlsVersion, bundle });
      assert.deepEqual(feed.routers()[0]?.self, { port: 80, httpsPort: 443 });
      const upToDate = await sync('pilot_node_secret_a', { version: body.version, waitMs: 0, tlsVersion: body.tls.version });
      assert.deepEqual(upToDate.json(), { version: body.version });
      const bad = await sync('pilot_node_secret_a', { version: body.version, self: { port: 70000 } });
      assert.equal(bad.statusCode, 400);
    } finally {
      await app.close();
    }
  });
});
