/**
 * Apps deployed by push: `POST /api/v1/apps` sets an app's repository, branch and webhook secret
 * (generated unless given), and the app's secrets (env values stored sealed, injected into its
 * instances, masked in logs). Secret values never come back out of the API.
 */
import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { resolveAppConfig } from '../core/app-config.js';
import { fail } from '../core/errors.js';
import { secretMasker } from '../core/mask.js';
import { assertName } from '../core/names.js';
import { assertSecretValue } from '../core/secret-value.js';
import { assertRepoUrl, normalizeRepo } from '../core/repo-url.js';
import type { SecretScope, Store } from '../store/store.js';
import type { SecretBox } from '../store/secret-box.js';

const CreateBody = Type.Object(
  {
    name: Type.String(),
    repo: Type.String(),
    branch: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    secret: Type.Optional(Type.String({ minLength: 16, maxLength: 256 })),
    githubToken: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
    statusApiUrl: Type.Optional(Type.String({ pattern: '^https?://', maxLength: 2048 })),
  },
  { additionalProperties: false },
);

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const MAX_SECRET_BYTES = 64 * 1024;

/**
 * The app's secrets of one scope, opened: `run` ones are injected into instances, `build` ones are
 * handed to the build steps only (never to an instance, never into the artifact).
 */
export async function openSecrets(store: Store, box: SecretBox, app: string, scope: SecretScope = 'run'): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const s of await store.listSecrets(app)) if (s.scope === scope) out[s.name] = box.open(s.value);
  return out;
}

/** A masker for every secret value of the app (run and build scopes; plain and base64) in log lines. */
export async function appMasker(store: Store, box: SecretBox, app: string): Promise<(line: string) => string> {
  const all = await store.listSecrets(app);
  return secretMasker(all.map((s) => box.open(s.value)));
}

/** A local repository path inside Pilot's own home (tokens, keys, database) is never cloned. */
function assertOutsideHome(repo: string, home: string | undefined): void {
  if (home === undefined) return;
  const local = repo.startsWith('/') ? repo : repo.startsWith('file:') ? normalizeRepo(repo) : undefined;
  if (local === undefined) return;
  const inside = (p: string, dir: string): boolean => p === dir || p.startsWith(dir.endsWith('/') ? dir : dir + '/');
  const abs = resolve(local);
  let real = abs;
  try {
    real = realpathSync(abs);
  } catch {
    // not there (yet): the path as written decides
  }
  let realHome = resolve(home);
  try {
    realHome = realpathSync(realHome);
  } catch {
    // keep the resolved path
  }
  if (inside(abs, resolve(home)) || inside(real, realHome)) {
    throw fail.repositoryInsidePilotHome({ repo: repo.slice(0, 200), home });
  }
}

export function registerSourceRoutes(
  app: FastifyInstance,
  deps: { store: Store; box: SecretBox; publicUrl: () => string; home?: string },
): void {
  const { store, box } = deps;

  app.post<{ Body: { name: string; repo: string; branch?: string; secret?: string; githubToken?: string; statusApiUrl?: string } }>(
    '/api/v1/apps',
    { schema: { body: CreateBody } },
    async (req, reply) => {
      const b = req.body;
      const name = assertName(b.name);
      const repo = assertRepoUrl(b.repo);
      assertOutsideHome(repo, deps.home);
      const branch = b.branch ?? 'main';
      if (/[\u0000-\u001f\u007f ~^:?*[\\]|\.\.|^-|^\/|\/$|\.lock$/.test(branch)) {
        throw fail.invalidBranch({ branch });
      }
      if (b.secret !== undefined) assertSecretValue(b.secret, 'the webhook secret');
      if (b.githubToken !== undefined) assertSecretValue(b.githubToken, 'the GitHub token');
      const secret = b.secret ?? randomBytes(24).toString('base64url');
      if ((await store.removingApps()).includes(name)) throw fail.appRemoving({ name });
      const existing = await store.getApp(name);
      const rec = await store.setAppSource(
        name,
        existing?.config ?? resolveAppConfig({}, name),
        {
          repo,
          branch,
          webhookSecret: box.seal(secret),
          githubToken: b.githubToken === undefined ? undefined : box.seal(b.githubToken),
          statusApiUrl: b.statusApiUrl,
        },
        Date.now(),
      );
      void reply.status(existing ? 200 : 201);
      const path = `/hooks/github/${name}`;
      return {
        app: { name: rec.name, repo: rec.repo, branch: rec.branch, commitStatus: Boolean(rec.githubToken) },
        webhook: { path, url: deps.publicUrl() + path, contentType: 'application/json', secret, secretGenerated: b.secret === undefined },
      };
    },
  );

  app.get<{ Params: { app: string } }>('/api/v1/apps/:app/secrets', async (req) => {
    const name = assertName(req.params.app);
    if (!(await store.getApp(name))) throw fail.appNotFound({ app: name });
    return { secrets: (await store.listSecrets(name)).map((s) => ({ name: s.name, scope: s.scope, updatedAt: s.updatedAt })) };
  });

  app.put<{ Params: { app: string; name: string }; Body: { value: string; scope?: SecretScope } }>(
    '/api/v1/apps/:app/secrets/:name',
    {
      schema: {
        body: Type.Object(
          {
            value: Type.String({ maxLength: MAX_SECRET_BYTES }),
            scope: Type.Optional(Type.Union([Type.Literal('run'), Type.Literal('build')])),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (req) => {
      const name = assertName(req.params.app);
      if (!ENV_NAME.test(req.params.name)) throw fail.invalidSecretName({ name: req.params.name.slice(0, 80) });
      assertSecretValue(req.body.value, `secret ${req.params.name}`);
      const scope = req.body.scope ?? 'run';
      if (!(await store.getApp(name))) {
        // A build secret is often needed by the very first deploy (a private registry's token): the
        // app is recorded now, with default config, as `POST /apps` does; its first run sets the rest.
        if (scope !== 'build') throw fail.appNotFound({ app: name });
        await store.upsertApp(name, resolveAppConfig({}, name), Date.now());
      }
      await store.setSecret(name, req.params.name, box.seal(req.body.value), Date.now(), scope);
      return {
        app: name,
        secret: req.params.name,
        scope,
        note:
          scope === 'build'
            ? 'given to the build steps of runs started from now on (not to the running app)'
            : 'takes effect for instances started from now on',
      };
    },
  );

  // The build secrets of a run's app, for the pipeline runner (pilot run, the CD worker) while the run
  // is in flight: a finished run no longer opens them. Admin token only, like every /api/v1 route.
  app.get<{ Params: { id: string } }>('/api/v1/runs/:id/build-secrets', async (req) => {
    const id = Number(req.params.id);
    const run = Number.isInteger(id) && id > 0 ? await store.getRun(id) : undefined;
    if (!run) throw fail.runNotFoundById({ id: req.params.id.slice(0, 40) });
    if (run.status !== 'running' && run.status !== 'queued') {
      throw fail.buildSecretsForFinishedRun({ id: run.id, status: run.status });
    }
    return { secrets: await openSecrets(store, box, run.app, 'build') };
  });

  app.delete<{ Params: { app: string; name: string } }>('/api/v1/apps/:app/secrets/:name', async (req) => {
    const name = assertName(req.params.app);
    if (!(await store.deleteSecret(name, req.params.name))) throw fail.appHasNoSecret({ app: name, secret: req.params.name.slice(0, 80) });
    return { app: name, deleted: req.params.name };
  });
}
