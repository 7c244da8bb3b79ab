/** Test and bench only: the webhook route on a real Fastify on 127.0.0.1 over a real SqliteStore. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { request } from 'undici';
import { resolveAppConfig } from '../core/app-config.js';
import { installErrorHandling } from '../control/http-errors.js';
import { SecretBox } from '../store/secret-box.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { EXAMPLE_REPO } from './github-examples.fixture.js';
import { registerWebhookRoutes } from './webhook-routes.js';
import { RunLedger } from './run-ledger.js';
import { installLingeringClose } from '../http/early-answer.js';

export interface WebhookServer {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly store: SqliteStore;
  readonly box: SecretBox;
  /** Run ids passed to onQueued, in order. */
  readonly queued: number[];
  /** Create (or re-point) an app that takes webhooks signed with `secret`. */
  createApp(name: string, secret: string, source?: { repo?: string; branch?: string }): Promise<void>;
  close(): Promise<void>;
}

/** Start the route like the control plane would (1 MiB default body limit elsewhere, catalogue errors). */
export async function startWebhookServer(opts: { maxBodyBytes?: number; bodyTimeoutMs?: number } = {}): Promise<WebhookServer> {
  const home = await mkdtemp(join(tmpdir(), 'pilot-cd-'));
  const store = new SqliteStore(join(home, 'pilot.db'));
  const box = new SecretBox(join(home, 'secret.key'));
  const queued: number[] = [];
  const app = Fastify({ bodyLimit: 1024 * 1024, logger: false }) as unknown as FastifyInstance;
  installErrorHandling(app);
  installLingeringClose(app); // as the control plane's server does
  registerWebhookRoutes(app, { store, ledger: new RunLedger(store), box, onQueued: (id) => queued.push(id), ...opts });
  app.get('/healthz', async () => ({ ok: true }));
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    url,
    app,
    store,
    box,
    queued,
    async createApp(name, secret, source = {}) {
      await store.setAppSource(
        name,
        resolveAppConfig({}, name),
        {
          repo: source.repo ?? EXAMPLE_REPO,
          branch: source.branch ?? 'main',
          webhookSecret: box.seal(secret),
          githubToken: undefined,
          statusApiUrl: undefined,
        },
        Date.now(),
      );
    },
    async close() {
      await app.close();
      store.close();
      await rm(home, { recursive: true, force: true });
    },
  };
}

export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly json: Record<string, unknown> | undefined;
}

/** POST `body` to /hooks/github/<app> with exactly `headers`; the JSON answer, if any. */
export async function deliver(url: string, app: string, body: Buffer | string, headers: Record<string, string>): Promise<Answer> {
  const res = await request(`${url}/hooks/github/${app}`, { method: 'POST', headers, body });
  const text = await res.body.text();
  const isJson = String(res.headers['content-type'] ?? '').startsWith('application/json');
  return {
    status: res.statusCode,
    headers: res.headers,
    json: isJson && text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : undefined,
  };
}

/** The error body of an answer: `{ code, message, hint, retryable }`. */
export function errorOf(a: Answer): { code?: string; message?: string; hint?: string } {
  return (a.json?.error ?? {}) as { code?: string; message?: string; hint?: string };
}
