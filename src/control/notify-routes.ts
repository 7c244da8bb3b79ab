/**
 * REST API for notifications (thin: check, call the store or the notifier, answer). A URL is a
 * secret (a Slack webhook's path is its key): sealed at rest, answered masked only.
 *
 *   GET    /api/v1/apps/:app/notify                    → { endpoints }
 *   POST   /api/v1/apps/:app/notify   { url, kind?, events?, secret? } → 201 { endpoint, secret? }
 *   DELETE /api/v1/apps/:app/notify/:id                → { removed }
 *   POST   /api/v1/apps/:app/notify/:id/test           → { delivery } (after its first attempt)
 *   GET    /api/v1/apps/:app/notify/log?limit=N        → { deliveries } (newest first, with attempts)
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { assertName } from '../core/names.js';
import { fail } from '../core/errors.js';
import { checkEndpointUrl, maskUrl, parseNotifyEvents, parseNotifyKind } from '../core/notify.js';
import type { SecretBox } from '../store/secret-box.js';
import type { NotifyAttemptRecord, NotifyDeliveryRecord, NotifyEndpointRecord, Store } from '../store/store.js';
import { newSigningSecret, type Notifier } from './notifications.js';

const AppParams = Type.Object({ app: Type.String({ maxLength: 63 }) });
const EndpointParams = Type.Object({ app: Type.String({ maxLength: 63 }), id: Type.Integer({ minimum: 1 }) });
const AddBody = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: 4096, description: 'Where to POST: an http(s) URL (sealed at rest, shown masked).' }),
    kind: Type.Optional(
      Type.String({ maxLength: 20, description: 'json (signed generic webhook) or slack; default slack for hooks.slack.com, else json.' }),
    ),
    events: Type.Optional(
      Type.Array(Type.String({ maxLength: 40 }), {
        maxItems: 20,
        description: 'Events it hears (deploy.live or live; all); default all but autoscale.changed.',
      }),
    ),
    secret: Type.Optional(
      Type.String({
        minLength: 16,
        maxLength: 256,
        description: 'json: the HMAC-SHA256 key of X-Pilot-Signature-256; default: a new random one, answered once.',
      }),
    ),
  },
  { additionalProperties: false },
);
const LogQuery = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })) });

/** An endpoint as the API shows it: the URL masked, never the secret. */
export function endpointView(e: NotifyEndpointRecord) {
  return {
    id: e.id,
    app: e.app,
    kind: e.kind,
    url: e.urlMasked,
    events: e.events,
    signed: e.secretSealed !== undefined,
    createdAt: new Date(e.createdAt).toISOString(),
  };
}

function deliveryView(d: NotifyDeliveryRecord & { log?: readonly NotifyAttemptRecord[] }) {
  return {
    id: d.id,
    endpoint: d.endpointId,
    event: d.event,
    status: d.status,
    attempts: d.attempts,
    createdAt: new Date(d.createdAt).toISOString(),
    nextAttemptAt: d.status === 'pending' ? new Date(d.nextAttemptAt).toISOString() : null,
    log: (d.log ?? []).map((a) => ({
      attempt: a.n,
      at: new Date(a.at).toISOString(),
      code: a.code ?? null,
      error: a.error ?? null,
      ms: a.ms,
    })),
  };
}

export function registerNotifyRoutes(
  api: FastifyInstance,
  deps: { store: Store; box: SecretBox; notifier: Notifier; testWaitMs: number },
): void {
  const { store, box, notifier } = deps;
  const find = async (app: string, id: number): Promise<NotifyEndpointRecord> => {
    const e = (await store.listNotifyEndpoints(app)).find((x) => x.id === id);
    if (!e) throw fail.notifyEndpointNotFound({ app, id });
    return e;
  };

  api.get<{ Params: Static<typeof AppParams> }>(
    '/api/v1/apps/:app/notify',
    { schema: { tags: ['notifications'], summary: "The app's notification endpoints (URLs masked)", params: AppParams } },
    async (req) => ({ endpoints: (await store.listNotifyEndpoints(assertName(req.params.app))).map(endpointView) }),
  );

  api.post<{ Params: Static<typeof AppParams>; Body: Static<typeof AddBody> }>(
    '/api/v1/apps/:app/notify',
    {
      schema: { tags: ['notifications'], summary: 'Add a notification endpoint (JSON webhook or Slack)', params: AppParams, body: AddBody },
    },
    async (req, reply) => {
      const app = assertName(req.params.app);
      const url = checkEndpointUrl(req.body.url);
      const kind = parseNotifyKind(req.body.kind, url);
      const events = parseNotifyEvents(req.body.events);
      const secret = kind === 'json' ? (req.body.secret ?? newSigningSecret()) : undefined;
      const endpoint = await store.addNotifyEndpoint({
        app,
        kind,
        urlSealed: box.seal(req.body.url),
        urlMasked: maskUrl(req.body.url),
        secretSealed: secret === undefined ? undefined : box.seal(secret),
        events,
        afterEvent: (await store.eventBounds()).lastId,
        createdAt: Date.now(),
      });
      void reply.status(201);
      // A generated key is answered once (the receiver needs it to check signatures); never again.
      return { endpoint: endpointView(endpoint), ...(secret !== undefined && req.body.secret === undefined ? { secret } : {}) };
    },
  );

  api.delete<{ Params: Static<typeof EndpointParams> }>(
    '/api/v1/apps/:app/notify/:id',
    {
      schema: {
        tags: ['notifications'],
        summary: 'Remove a notification endpoint (its pending deliveries end failed)',
        params: EndpointParams,
      },
    },
    async (req) => {
      const app = assertName(req.params.app);
      if (!(await store.deleteNotifyEndpoint(app, req.params.id, Date.now())))
        throw fail.notifyEndpointNotFound({ app, id: req.params.id });
      return { removed: req.params.id };
    },
  );

  api.post<{ Params: Static<typeof EndpointParams> }>(
    '/api/v1/apps/:app/notify/:id/test',
    { schema: { tags: ['notifications'], summary: 'Send a test notification; answers after its first attempt', params: EndpointParams } },
    async (req) => {
      const e = await find(assertName(req.params.app), req.params.id);
      const d = await notifier.test(e, deps.testWaitMs);
      const log = (await store.listNotifyDeliveries(e.app, 50)).find((x) => x.id === d.id);
      return { delivery: deliveryView(log ?? d) };
    },
  );

  api.get<{ Params: Static<typeof AppParams>; Querystring: Static<typeof LogQuery> }>(
    '/api/v1/apps/:app/notify/log',
    {
      schema: {
        tags: ['notifications'],
        summary: "The app's notification deliveries, newest first, with every attempt",
        params: AppParams,
        querystring: LogQuery,
      },
    },
    async (req) => ({
      deliveries: (await store.listNotifyDeliveries(assertName(req.params.app), req.query.limit ?? 50)).map(deliveryView),
    }),
  );
}
