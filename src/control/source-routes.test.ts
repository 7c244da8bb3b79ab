import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { resolveAppConfig } from '../core/app-config.js';
import { MemoryStore } from '../store/memory-store.js';
import { SecretBox } from '../store/secret-box.js';
import { installErrorHandling } from './http-errors.js';
import { registerSourceRoutes } from './source-routes.js';

// The secret routes over the in-memory store (a test double behind Store), on a real Fastify.
describe('secret routes and an app being removed', () => {
  let dir: string;
  let app: FastifyInstance;
  const store = new MemoryStore();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pilot-source-routes-'));
    app = Fastify({ logger: false });
    installErrorHandling(app);
    registerSourceRoutes(app, { store, box: new SecretBox(join(dir, 'secret.key')), publicUrl: () => 'http://127.0.0.1:7070' });
    await app.ready();
  });
  after(async () => {
    await app.close();
    store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a build secret for an app being removed (409 app_removing), so a new app of that name inherits nothing', async () => {
    await store.upsertNode({
      id: 'n1',
      name: 'node-1',
      address: '127.0.0.1',
      apiUrl: 'http://127.0.0.1:1',
      credentialHash: 'h',
      agentToken: 't',
      registeredAt: 1,
      lastSeenAt: 1,
      scheduling: 'eligible',
      cpus: undefined,
      memoryMb: undefined,
      labels: {},
      runtimes: {},
    });
    await store.upsertApp('web', resolveAppConfig({}, 'web'), 1);
    await store.createInstance({ id: 'web-1-a', app: 'web', revision: 1, nodeId: 'n1', desired: 'run', createdAt: 2 });
    assert.equal(await store.removeApp('web', 3), true);
    const put = (scope: string) =>
      app.inject({ method: 'PUT', url: '/api/v1/apps/web/secrets/NPM_TOKEN', payload: { value: 'npm_secret_value', scope } });
    const build = await put('build');
    assert.equal(build.statusCode, 409, build.body);
    assert.equal(build.json().error.code, 'app_removing');
    assert.equal((await put('run')).statusCode, 404, 'a run secret needs an app');
    await store.deleteInstance('web-1-a');
    assert.deepEqual(await store.purgeRemovedApps(), ['web']);
    // A new app of the same name: its first build secret creates it, and it has only that one.
    assert.equal((await put('build')).statusCode, 200);
    assert.deepEqual(
      (await store.listSecrets('web')).map((s) => [s.name, s.scope]),
      [['NPM_TOKEN', 'build']],
    );
    assert.ok(((await store.getApp('web'))?.createdAt ?? 0) > 3, 'a new app, not the old row');
  });
});
