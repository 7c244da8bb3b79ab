/**
 * Every route needs a credential. The control plane's own list of routes (fastify's onRoute, so a
 * new route is walked without touching this file) is walked with no token, a wrong token, a join
 * token and a node credential: each must answer 401/403, except the documented exceptions below
 * (README "Security"), which are checked with the credential they do take. The admin token must
 * pass authentication everywhere it is meant to, so a 401 here is never an accident of the walk.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { request } from 'undici';
import { AGENT_PROTOCOL } from '../api/protocol.js';
import { startControlPlane, type ControlPlane } from './server.js';

type Who = 'none' | 'wrong' | 'join' | 'node' | 'admin';

/** The routes that do not take the admin token, and who may use them. */
const EXCEPTIONS: Record<string, { allowed: readonly Who[]; why: string }> = {
  'GET /healthz': { allowed: ['none', 'wrong', 'join', 'node', 'admin'], why: 'liveness, for load balancers and supervisors' },
  'HEAD /healthz': { allowed: ['none', 'wrong', 'join', 'node', 'admin'], why: 'liveness' },
  'POST /api/v1/agent/register': {
    allowed: ['join', 'admin'],
    why: 'a new node registers with a join token; the admin token may also take a name over (a Swarm bridge on a new leader)',
  },
  'POST /api/v1/agent/sync': { allowed: ['node'], why: 'a node syncs with its own credential' },
  'GET /api/v1/artifacts/:digest': { allowed: ['node', 'admin'], why: 'agents download artifacts' },
  'HEAD /api/v1/artifacts/:digest': { allowed: ['node', 'admin'], why: 'agents check artifacts' },
  'GET /api/v1/artifacts/:digest/meta': { allowed: ['node', 'admin'], why: 'agents read artifact metadata' },
  'HEAD /api/v1/artifacts/:digest/meta': { allowed: ['node', 'admin'], why: 'agents read artifact metadata' },
  'POST /api/v1/artifacts/:digest/verify': { allowed: ['node', 'admin'], why: 'an agent reports a download that did not match its digest' },
  'POST /api/v1/router/sync': {
    allowed: ['node', 'admin'],
    why: "a node's router reads the routing table with its node's credential (the router token too)",
  },
  'POST /hooks/github/:app': { allowed: [], why: "signed with the app's webhook secret: no bearer token opens it" },
  'GET /': { allowed: ['none', 'wrong', 'join', 'node', 'admin'], why: "the dashboard's page: its data comes through the API" },
  'HEAD /': { allowed: ['none', 'wrong', 'join', 'node', 'admin'], why: "the dashboard's page" },
  'GET /*': { allowed: ['none', 'wrong', 'join', 'node', 'admin'], why: "the dashboard's built files and page routes" },
  'HEAD /*': { allowed: ['none', 'wrong', 'join', 'node', 'admin'], why: "the dashboard's built files" },
  'POST /api/v1/session': {
    allowed: ['none', 'wrong', 'join', 'node', 'admin'],
    why: 'dashboard sign-in: the token is checked in the body (web-routes.test.ts); the walk sends none (400)',
  },
  'GET /api/v1/session': { allowed: [], why: 'the session cookie only (web-routes.test.ts)' },
  'HEAD /api/v1/session': { allowed: [], why: 'the session cookie only' },
  'DELETE /api/v1/session': {
    allowed: ['none', 'wrong', 'join', 'node', 'admin'],
    why: 'sign-out clears the cookie; a live session needs CSRF proof',
  },
};

const DIGEST = `sha256:${'a'.repeat(64)}`;
/** Plausible values for path parameters. */
const PARAMS: Record<string, string> = { app: 'walk', id: '1', digest: DIGEST, version: '20.11.1', name: 'walk-node', '*': 'x' };

function fill(url: string): string {
  return url.replace(/:([A-Za-z_]+)/g, (_, p: string) => encodeURIComponent(PARAMS[p] ?? 'x')).replace('*', PARAMS['*']!);
}

describe('every route needs a credential (route walk)', { timeout: 120_000 }, () => {
  let cp: ControlPlane;
  let home: string;
  const tokens: Record<Exclude<Who, 'none'>, string> = { wrong: 'pilot_admin_wrongwrongwrongwrongwrong', join: '', node: '', admin: '' };
  let nodeCount = 0;

  const send = async (method: string, url: string, who: Who): Promise<{ status: number; text: string }> => {
    const path = fill(url);
    let body: string | undefined;
    // The routes that check their own credential validate the body first: send a valid one, so
    // the answer is about the credential.
    if (url === '/api/v1/agent/register') {
      body = JSON.stringify({
        protocol: AGENT_PROTOCOL,
        name: `walker-${++nodeCount}`,
        address: '127.0.0.1',
        apiUrl: 'http://127.0.0.1:1',
        agentToken: 'b'.repeat(32),
      });
    } else if (url === '/api/v1/agent/sync') {
      body = JSON.stringify({ protocol: AGENT_PROTOCOL, instances: [] });
    } else if (url.startsWith('/hooks/')) {
      body = JSON.stringify({ ref: 'refs/heads/main' });
    } else if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
      body = '{}';
    }
    const res = await request(cp.apiUrl + path, {
      method: method as 'GET',
      headers: {
        ...(who === 'none' ? {} : { authorization: `Bearer ${tokens[who]}` }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(url.startsWith('/hooks/') ? { 'x-github-event': 'push', 'x-github-delivery': `walk-${who}` } : {}),
      },
      ...(body === undefined ? {} : { body }),
    });
    return { status: res.statusCode, text: method === 'HEAD' ? '' : (await res.body.text()).slice(0, 300) };
  };

  before(async () => {
    home = mkdtempSync(join(tmpdir(), 'pilot-auth-walk-'));
    cp = await startControlPlane({
      home,
      host: '127.0.0.1',
      port: 0,
      routerHost: '127.0.0.1',
      routerPort: 0,
      logger: pino({ level: 'silent' }),
      gcIntervalMs: 0,
    });
    tokens.admin = cp.adminToken;
    tokens.join = cp.joinToken;
    // A node credential, as an agent gets it; an app with a webhook, so the hook route reaches its signature check.
    const reg = await send('POST', '/api/v1/agent/register', 'join');
    assert.equal(reg.status, 201, reg.text);
    tokens.node = (JSON.parse(reg.text) as { credential: string }).credential;
    const app = await request(`${cp.apiUrl}/api/v1/apps`, {
      method: 'POST',
      headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'walk', repo: 'https://github.com/example/walk.git' }),
    });
    assert.equal(app.statusCode, 201, await app.body.text());
  });
  after(async () => {
    await cp.close();
    rmSync(home, { recursive: true, force: true });
  });

  it('knows the routes it walks: the API has them all, including the ones named as exceptions', () => {
    const keys = new Set(cp.routes.map((r) => `${r.method} ${r.url}`));
    assert.ok(keys.size >= 30, `only ${keys.size} routes found`);
    for (const k of Object.keys(EXCEPTIONS)) assert.ok(keys.has(k), `exception ${k} names no route (remove it, or fix its spelling)`);
  });

  it('answers 401/403 to no token, a wrong token, a join token and a node credential on every route but the exceptions', async () => {
    const failures: string[] = [];
    let walked = 0;
    // Removals last: DELETE /api/v1/apps/:app with the admin token removes the app the other routes use.
    const routes = [...cp.routes].sort((a, b) => Number(a.method === 'DELETE') - Number(b.method === 'DELETE'));
    for (const { method, url } of routes) {
      const key = `${method} ${url}`;
      const allowed = EXCEPTIONS[key]?.allowed ?? ['admin'];
      for (const who of ['none', 'wrong', 'join', 'node', 'admin'] as const) {
        const r = await send(method, url, who);
        walked++;
        const refused = r.status === 401 || r.status === 403;
        if (allowed.includes(who) === refused) {
          failures.push(`${key} with ${who}: ${r.status} (${allowed.includes(who) ? 'should be let in' : 'should be refused'}) ${r.text}`);
        }
      }
    }
    assert.deepEqual(failures, [], `${failures.length} of ${walked} calls wrong`);
  });
});
