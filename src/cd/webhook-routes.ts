/**
 * `POST /hooks/github/:app`: GitHub deliveries in, durably queued runs out. The app named in the URL
 * fixes the secret before a byte of the body is read; the signature is checked on the raw bytes
 * before JSON is parsed; the answer goes out only after the run is committed (see the README flow).
 * Authentication is the signature: the server's token hook must let `/hooks/` through.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { fail } from '../core/errors.js';
import { sanitizeLine } from '../core/mask.js';
import { assertName } from '../core/names.js';
import { sameRepository } from '../core/repo-url.js';
import type { RunLedger } from './run-ledger.js';
import type { SecretBox } from '../store/secret-box.js';
import type { AppRecord, Store } from '../store/store.js';
import { parsePush, showRef } from './github-push.js';
import { verifyGithubSignature } from './github-signature.js';

export interface WebhookRouteDeps {
  readonly store: Store;
  /** The only writer of runs: a push is queued through it. */
  readonly ledger: RunLedger;
  readonly box: SecretBox;
  /** Called after a run is committed to the queue (wake the worker); a throw here is logged, not answered. */
  readonly onQueued: (runId: number) => void;
  /** Largest body accepted (413 beyond, without reading further). GitHub caps payloads at 25 MB. */
  readonly maxBodyBytes?: number;
  /** Time allowed from the request's arrival to the last body byte; then the socket is destroyed. */
  readonly bodyTimeoutMs?: number;
}

export const GITHUB_MAX_BODY_BYTES = 25 * 1024 * 1024;
export const DEFAULT_BODY_TIMEOUT_MS = 10_000;
/** GitHub sends a GUID; anything short made of these characters is safe to store, log and compare. */
const DELIVERY_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/;
interface HookRoute {
  Params: { app: string };
}

/** An app that can receive webhooks, with its secret opened. */
interface Target {
  readonly app: AppRecord & { readonly repo: string; readonly branch: string };
  readonly secret: string;
}

const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);
const isJsonType = (ct: string | undefined): boolean => ct?.split(';')[0]?.trim().toLowerCase() === 'application/json';

/** Register `POST /hooks/github/:app` in its own encapsulated scope (its raw-body parser stays there). */
export function registerWebhookRoutes(app: FastifyInstance, deps: WebhookRouteDeps): void {
  const maxBodyBytes = deps.maxBodyBytes ?? GITHUB_MAX_BODY_BYTES;
  const bodyTimeoutMs = deps.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS;
  const targets = new WeakMap<FastifyRequest, Target>();
  const bodyTimers = new WeakMap<IncomingMessage, NodeJS.Timeout>();
  const clearBodyTimer = (raw: IncomingMessage): void => {
    clearTimeout(bodyTimers.get(raw));
    bodyTimers.delete(raw);
  };

  void app.register(async (scope) => {
    // Raw bytes, not parsed JSON: the HMAC is over the exact bytes GitHub sent. The limit is checked
    // against Content-Length up front and against bytes received while reading, so nothing past it
    // is ever held in memory.
    scope.removeContentTypeParser('application/json');
    scope.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: maxBodyBytes }, (req, body, done) => {
      clearBodyTimer(req.raw);
      done(null, body);
    });

    scope.addHook('onRequest', async (req) => {
      // A client trickling its body would hold a socket and a buffer for as long as it likes.
      const timer = setTimeout(() => {
        req.log.info({ timeoutMs: bodyTimeoutMs }, 'webhook body not received in time: connection closed');
        req.raw.socket.destroy();
      }, bodyTimeoutMs);
      timer.unref();
      bodyTimers.set(req.raw, timer);
    });
    scope.addHook('onResponse', async (req) => clearBodyTimer(req.raw));
    scope.addHook('onRequestAbort', async (req) => clearBodyTimer(req.raw));

    // Before the body is read: an unknown app or a form-encoded delivery is refused without buffering
    // up to 25 MB for nothing.
    scope.addHook('preParsing', async (req, _reply, payload) => {
      const name = assertName((req.params as HookRoute['Params']).app);
      const rec = await deps.store.getApp(name);
      if (!rec || rec.webhookSecret === undefined || rec.repo === undefined || rec.branch === undefined) {
        throw fail.webhookAppNotFound({ name });
      }
      const ct = one(req.headers['content-type']);
      if (!isJsonType(ct)) {
        throw fail.webhookContentType({ ct: sanitizeLine(ct ?? '(none)', 100) });
      }
      targets.set(req, { app: { ...rec, repo: rec.repo, branch: rec.branch }, secret: deps.box.open(rec.webhookSecret) });
      return payload;
    });

    // The reply may leave part of the body unread (413, 404, 415): the server's lingering close
    // (http/early-answer.ts installLingeringClose) closes the connection after the answer is read.

    scope.post<HookRoute>('/hooks/github/:app', { bodyLimit: maxBodyBytes }, async (req, reply) => {
      const target = targets.get(req);
      if (!target) throw fail.webhookTargetNotResolved();
      const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const signature = one(req.headers['x-hub-signature-256']);
      // Nothing of the body is looked at before this; the message never shows the expected MAC.
      if (!verifyGithubSignature(target.secret, raw, signature)) {
        throw signature === undefined ? fail.signatureMissing() : fail.signatureMismatch();
      }
      const event = one(req.headers['x-github-event']);
      if (event === undefined || event === '') throw fail.eventHeaderMissing();
      let payload: unknown;
      try {
        payload = JSON.parse(raw.toString('utf8'));
      } catch {
        throw fail.webhookBodyNotJson();
      }
      if (event === 'ping') {
        const zen = (payload as { zen?: unknown } | null)?.zen;
        return reply.code(200).send({ ok: true, ...(typeof zen === 'string' ? { zen: sanitizeLine(zen, 200) } : {}) });
      }
      if (event === 'push') return handlePush(req, reply, target, payload, deps);
      return reply.code(202).send({ ignored: `event ${JSON.stringify(sanitizeLine(event, 100))}` });
    });
  });
}

/** A signed push: ignore it with a reason, or commit a run and only then acknowledge it. */
async function handlePush(
  req: FastifyRequest,
  reply: FastifyReply,
  target: Target,
  payload: unknown,
  deps: WebhookRouteDeps,
): Promise<FastifyReply> {
  const { app } = target;
  const push = parsePush(payload);
  const ignore = (reason: string): FastifyReply => {
    req.log.info({ app: app.name, event: 'push', ignored: reason }, 'webhook ignored');
    return reply.code(202).send({ ignored: reason });
  };
  // The run clones the app's configured repository, never one named by the payload: a push from
  // elsewhere (a fork, a reused secret) must not deploy the app's branch at a foreign SHA.
  if (!sameRepository(app.repo, push.repository)) return ignore(`repository ${repoName(push.repository)} is not the app's repository`);
  if (push.kind === 'ignore') return ignore(push.reason);
  if (push.branch !== app.branch) return ignore(`branch ${showRef(push.branch)} is not the app's branch (${showRef(app.branch)})`);

  const deliveryId = one(req.headers['x-github-delivery']);
  if (deliveryId === undefined || !DELIVERY_RE.test(deliveryId)) {
    throw deliveryId === undefined ? fail.deliveryIdMissing() : fail.deliveryIdInvalid();
  }
  const result = await deps.ledger.enqueueWebhookRun({
    app: app.name,
    deliveryId,
    commit: push.commit,
    branch: push.branch,
    message: push.message,
    author: push.author,
    now: Date.now(),
    ...(typeof push.repository['full_name'] === 'string' && /^[\w.-]+\/[\w.-]+$/.test(push.repository['full_name'])
      ? { repoFullName: push.repository['full_name'] }
      : {}),
  });
  const log = { app: app.name, delivery: deliveryId, commit: push.commit, run: result.run.id };
  switch (result.outcome) {
    case 'queued':
      req.log.info({ ...log, superseded: result.superseded }, 'webhook run queued');
      try {
        deps.onQueued(result.run.id);
      } catch (err) {
        // The run is committed; the worker finds it on its next poll even if this wake-up failed.
        req.log.error({ err, run: result.run.id }, 'onQueued failed');
      }
      return reply.code(202).send({ run: result.run.id, status: 'queued', superseded: result.superseded });
    case 'duplicate-delivery':
    case 'duplicate-commit': {
      const duplicate = result.outcome === 'duplicate-delivery' ? 'delivery' : 'commit';
      req.log.info({ ...log, duplicate }, 'webhook duplicate');
      return reply.code(200).send({ run: result.run.id, status: result.run.status, duplicate });
    }
  }
}

function repoName(repo: Readonly<Record<string, unknown>>): string {
  const name = repo.full_name ?? repo.clone_url ?? repo.url;
  return typeof name === 'string' ? JSON.stringify(sanitizeLine(name, 200)) : '(unnamed)';
}
