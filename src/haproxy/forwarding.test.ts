import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { pino } from 'pino';
import { send, startUpstream, type Echo, type TestUpstream } from '../router/test-support.js';
import { HaproxyRouter } from './haproxy-router.js';

/**
 * The forwarding headers on real HAProxy, both forms config.ts generates: without trusted proxies
 * (plain header writes, the default) and with them (the client's X-Forwarded-Proto/-Host kept).
 */
describe('haproxy forwarding headers, with and without trusted proxies', () => {
  let up: TestUpstream;
  const dirs: string[] = [];
  const routers: HaproxyRouter[] = [];
  const pools: Pool[] = [];

  before(async () => {
    up = await startUpstream('echo');
  });
  after(async () => {
    await Promise.all(pools.map((p) => p.close()));
    await Promise.all(routers.map((r) => r.close()));
    await up.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const start = async (trusted: string[]): Promise<Pool> => {
    const dir = mkdtempSync(join(tmpdir(), 'pilot-haproxy-fwd-'));
    dirs.push(dir);
    const r = await HaproxyRouter.start({ dir, host: '127.0.0.1', port: 0, trusted, log: pino({ level: 'silent' }) });
    routers.push(r);
    await r.apply([
      {
        app: 'fwd',
        hosts: ['fwd.localhost'],
        backends: [{ revision: 1, weight: 100, upstreams: [{ id: 'e', host: up.host, port: up.port }] }],
      },
    ]);
    const pool = new Pool(r.url, { connections: 1 });
    pools.push(pool);
    return pool;
  };
  const spoofed = {
    'x-forwarded-for': '203.0.113.9',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'evil.example',
    forwarded: 'for=203.0.113.9',
    'x-real-ip': '203.0.113.9',
    'x-pilot-revision': '',
  };

  it("drops a client's own forwarding headers when no proxy is trusted, and sets them", async () => {
    const pool = await start([]);
    const h = (JSON.parse((await send(pool, 'FWD.localhost:8080', { headers: spoofed })).text) as Echo).headers;
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-host'], 'FWD.localhost:8080');
    assert.equal(h.forwarded, undefined);
    assert.equal(h['x-real-ip'], undefined);
    assert.equal(h['x-pilot-revision'], undefined, 'an empty pin header is removed too');
  });

  it("keeps a trusted proxy's X-Forwarded-Proto/-Host and appends to its X-Forwarded-For", async () => {
    const pool = await start(['127.0.0.0/8']);
    const h = (JSON.parse((await send(pool, 'fwd.localhost', { headers: spoofed })).text) as Echo).headers;
    assert.match(String(h['x-forwarded-for']), /^203\.0\.113\.9, ?127\.0\.0\.1$/);
    assert.equal(h['x-forwarded-proto'], 'https');
    assert.equal(h['x-forwarded-host'], 'evil.example');
    assert.equal(h['x-real-ip'], '203.0.113.9');
  });
});
