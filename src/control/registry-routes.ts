/**
 * Container registries: where the pipeline publishes images (`pilot registry set URL`) and the
 * credentials agents need to pull them. Passwords are sealed at rest (SecretBox) and only come back
 * out with `?credentials=1` (the pipeline's publish step, admin token) or, per instance, in the
 * agent's InstanceSpec.registryAuth. The most recently set registry is the publish target; older
 * ones are kept so that revisions pushed there can still be pulled.
 */
import type { RegistryView } from '../api/wire.js';
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { fail } from '../core/errors.js';
import { assertSecretValue } from '../core/secret-value.js';
import { parseRegistryUrl, registryOfRef } from '../core/registry-url.js';
import type { InstanceSpec } from '../core/types.js';
import type { Store } from '../store/store.js';
import type { SecretBox } from '../store/secret-box.js';

const SetBody = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: 2048 }),
    username: Type.Optional(Type.String({ minLength: 1, maxLength: 256, pattern: '^[^\\u0000-\\u001f\\u007f]+$' })),
    password: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
  },
  { additionalProperties: false },
);

export function registerRegistryRoutes(app: FastifyInstance, deps: { store: Store; box: SecretBox }): void {
  const { store, box } = deps;
  const view = async (withCredentials: boolean): Promise<RegistryView[]> =>
    (await store.listRegistries()).map((r, i) => ({
      url: r.url,
      address: parseRegistryUrl(r.url).address,
      username: r.username ?? null,
      hasPassword: r.password !== undefined,
      ...(withCredentials && r.password !== undefined ? { password: box.open(r.password) } : {}),
      publish: i === 0,
      updatedAt: r.updatedAt,
    }));

  app.get<{ Querystring: { credentials?: string } }>('/api/v1/registries', async (req) => ({
    registries: await view(req.query.credentials === '1'),
  }));

  app.put<{ Body: { url: string; username?: string; password?: string } }>(
    '/api/v1/registries',
    { schema: { body: SetBody } },
    async (req, reply) => {
      const { url, address } = parseRegistryUrl(req.body.url);
      const { username, password } = req.body;
      if ((username === undefined) !== (password === undefined)) {
        throw fail.registryCredentialsHalf();
      }
      if (password !== undefined) assertSecretValue(password, 'the registry password');
      const existed = (await store.listRegistries()).some((r) => r.url === url);
      await store.putRegistry({ url, username, password: password === undefined ? undefined : box.seal(password), updatedAt: Date.now() });
      req.log.info({ registry: url, username: username ?? null }, 'registry set');
      void reply.status(existed ? 200 : 201);
      return { registry: { url, address, username: username ?? null, hasPassword: password !== undefined, publish: true } };
    },
  );

  app.delete<{ Querystring: { url?: string } }>('/api/v1/registries', async (req) => {
    if (!req.query.url) throw fail.registryDeleteNeedsUrl();
    const { url } = parseRegistryUrl(req.query.url);
    if (!(await store.deleteRegistry(url))) throw fail.noRegistryConfigured({ url });
    return { removed: url };
  });
}

/** Credentials for pulling `image.ref`, when the control plane has them for its registry; sealed values opened here only. */
export async function registryAuthFor(store: Store, box: SecretBox, ref: string | undefined): Promise<InstanceSpec['registryAuth']> {
  const address = ref === undefined ? undefined : registryOfRef(ref);
  if (address === undefined) return undefined;
  for (const r of await store.listRegistries()) {
    if (parseRegistryUrl(r.url).address !== address || r.username === undefined || r.password === undefined) continue;
    return { serveraddress: address, username: r.username, password: box.open(r.password) };
  }
  return undefined;
}
