import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { SqliteStore } from '../store/sqlite-store.js';
import { registryAuthFor } from './registry-routes.js';
import { SecretBox } from '../store/secret-box.js';
import { startControlPlane, type ControlPlane } from './server.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read loosely: the test asserts on what a client sees
type Json = any;

describe('registry routes', () => {
  let home: string;
  let cp: ControlPlane;
  const call = async (
    method: string,
    path: string,
    body?: unknown,
    token: string | null = cp.adminToken,
  ): Promise<{ status: number; json: Json }> => {
    const res = await fetch(cp.apiUrl + path, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: await res.json() };
  };

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'pilot-registries-'));
    cp = await startControlPlane({
      home,
      host: '127.0.0.1',
      port: 0,
      routerHost: '127.0.0.1',
      routerPort: 0,
      logger: pino({ level: 'silent' }),
      workers: 0,
    });
  });
  after(async () => {
    await cp.close();
    await rm(home, { recursive: true, force: true });
  });

  it('needs the admin token', async () => {
    assert.equal((await call('GET', '/api/v1/registries', undefined, null)).status, 401);
    assert.equal((await call('PUT', '/api/v1/registries', { url: 'http://127.0.0.1:5000' }, 'pilot_admin_wrong')).status, 401);
  });

  it('refuses bad input with what to fix, and keeps answering', async () => {
    for (const [body, why] of [
      [{ url: '127.0.0.1:5000' }, /must start with http/],
      [{ url: 'http://a:b@127.0.0.1:5000' }, /user name or password/],
      [{ url: 'http://127.0.0.1:5000/v2' }, /no path/],
      [{ url: 'http://127.0.0.1:5000', username: 'u' }, /both a user name and a password/],
      [{ url: 'http://127.0.0.1:5000', password: 'p' }, /both a user name and a password/],
      [{}, /url/],
    ] as const) {
      const r = await call('PUT', '/api/v1/registries', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(r.json.error.message, why, JSON.stringify(body));
    }
    const del = await call('DELETE', '/api/v1/registries?url=http://127.0.0.1:5999');
    assert.equal(del.status, 404);
    assert.equal((await call('GET', '/api/v1/registries')).status, 200);
  });

  it('stores the password sealed, shows it only with credentials=1, publishes to the latest set', async () => {
    assert.equal(
      (await call('PUT', '/api/v1/registries', { url: 'http://127.0.0.1:5001/', username: 'ci', password: 'hunter2-registry' })).status,
      201,
    );
    assert.equal((await call('PUT', '/api/v1/registries', { url: 'http://127.0.0.1:5002' })).status, 201);
    const list = await call('GET', '/api/v1/registries');
    assert.deepEqual(
      list.json.registries.map((r: { url: string; publish: boolean }) => [r.url, r.publish]),
      [
        ['http://127.0.0.1:5002', true],
        ['http://127.0.0.1:5001', false],
      ],
    );
    assert.ok(!JSON.stringify(list.json).includes('hunter2-registry'));
    const creds = await call('GET', '/api/v1/registries?credentials=1');
    assert.equal(creds.json.registries[1].password, 'hunter2-registry');
    assert.ok(!readFileSync(join(home, 'pilot.db')).includes('hunter2-registry'), 'the password is in the database in clear');
    // Setting an existing one again makes it the publish target.
    assert.equal(
      (await call('PUT', '/api/v1/registries', { url: 'http://127.0.0.1:5001', username: 'ci', password: 'hunter2-registry' })).status,
      200,
    );
    assert.equal((await call('GET', '/api/v1/registries')).json.registries[0].url, 'http://127.0.0.1:5001');
    assert.equal((await call('DELETE', `/api/v1/registries?url=${encodeURIComponent('http://127.0.0.1:5002')}`)).status, 200);
    assert.equal((await call('GET', '/api/v1/registries')).json.registries.length, 1);
  });

  it('gives agents credentials for the registry of an image reference only', async () => {
    const store = new SqliteStore(join(home, 'pilot.db'));
    const box = new SecretBox(join(home, 'secret.key'));
    try {
      assert.deepEqual(await registryAuthFor(store, box, '127.0.0.1:5001/shop@sha256:' + 'a'.repeat(64)), {
        serveraddress: '127.0.0.1:5001',
        username: 'ci',
        password: 'hunter2-registry',
      });
      assert.equal(await registryAuthFor(store, box, '127.0.0.1:5009/shop@sha256:' + 'a'.repeat(64)), undefined);
      assert.equal(await registryAuthFor(store, box, undefined), undefined);
    } finally {
      store.close();
    }
  });
});
