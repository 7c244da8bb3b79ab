/**
 * `pilot notify add|ls|rm|test|log APP`: an app's notification endpoints (control/notify-routes.ts).
 * The URL is a secret: read from --url-file / $PILOT_NOTIFY_URL (--url works, with a warning), shown
 * masked. A generated signing key is printed once, when the endpoint is added.
 */
import { fail } from '../core/errors.js';
import { apiClient, output, table, type GlobalOptions } from './context.js';
import { secretFrom, withFlagNames } from './secret-input.js';

interface EndpointRow {
  id: number;
  app: string;
  kind: 'json' | 'slack';
  url: string;
  events: string[];
  signed: boolean;
  createdAt: string;
}
interface AttemptRow {
  attempt: number;
  at: string;
  code: number | null;
  error: string | null;
  ms: number;
}
interface DeliveryRow {
  id: number;
  endpoint: number;
  event: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  createdAt: string;
  nextAttemptAt: string | null;
  log: AttemptRow[];
}

const path = (app: string, rest = ''): string => `/api/v1/apps/${encodeURIComponent(app)}/notify${rest}`;

function endpointId(text: string): number {
  if (!/^[1-9]\d{0,9}$/.test(text)) throw fail.notifyIdInvalid({ text });
  return Number(text);
}

export async function notifyAdd(
  app: string,
  opts: GlobalOptions & { url?: string; urlFile?: string; kind?: string; events?: string; secretFile?: string },
): Promise<void> {
  const url = secretFrom({ value: opts.url, flag: '--url', file: opts.urlFile, fileFlag: '--url-file', env: 'PILOT_NOTIFY_URL' });
  if (url === undefined) throw fail.notifyNeedsUrl();
  const secret = secretFrom({ flag: '--secret', file: opts.secretFile, fileFlag: '--secret-file' });
  const body = {
    url: url.trim(),
    ...(opts.kind === undefined ? {} : { kind: opts.kind }),
    ...(opts.events === undefined ? {} : { events: opts.events.split(',') }),
    ...(secret === undefined ? {} : { secret }),
  };
  const res = await apiClient(opts)
    .call<{ endpoint: EndpointRow; secret?: string }>('POST', path(app), body)
    .catch((err: unknown) => {
      throw withFlagNames(err, {
        'body/url': { flag: '--url' },
        'body/secret': { flag: '--secret-file', hint: 'A signing key of 16 to 256 characters.' },
      });
    });
  output(opts, res, () => {
    const e = res.endpoint;
    const lines = [`added endpoint #${e.id} for ${e.app}: ${e.kind} ${e.url} (${e.events.join(', ')})`];
    if (res.secret)
      lines.push(
        `signing key (shown once; the receiver checks X-Pilot-Signature-256 = sha256=HMAC-SHA256(key, raw body)):`,
        `  ${res.secret}`,
      );
    lines.push(`send a test: pilot notify test ${e.app} ${e.id}`);
    return lines.join('\n');
  });
}

export async function notifyList(app: string, opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ endpoints: EndpointRow[] }>('GET', path(app));
  output(opts, res, () =>
    res.endpoints.length === 0
      ? `no notification endpoints for ${app} (add one: pilot notify add ${app} --url-file FILE [--kind slack])`
      : table(
          ['ID', 'KIND', 'URL', 'EVENTS', 'SIGNED', 'ADDED'],
          res.endpoints.map((e) => [
            e.id,
            e.kind,
            e.url,
            e.events.join(','),
            e.signed ? 'yes' : '-',
            e.createdAt.slice(0, 19).replace('T', ' '),
          ]),
        ),
  );
}

export async function notifyRemove(app: string, id: string, opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ removed: number }>('DELETE', path(app, `/${endpointId(id)}`));
  output(opts, res, () => `removed endpoint #${res.removed} of ${app}`);
}

function attemptLine(a: AttemptRow): string {
  return `#${a.attempt} ${a.at.slice(11, 19)} ${a.code ?? '-'} ${a.error ?? 'ok'} (${a.ms} ms)`;
}

export async function notifyTest(app: string, id: string, opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ delivery: DeliveryRow }>('POST', path(app, `/${endpointId(id)}/test`));
  output(opts, res, () => {
    const d = res.delivery;
    const last = d.log[d.log.length - 1];
    const how = last ? attemptLine(last) : 'not attempted yet';
    if (d.status === 'delivered') return `test notification delivered to endpoint #${d.endpoint}: ${how}`;
    return `test notification ${d.status === 'failed' ? 'failed' : `not delivered yet (retried at ${d.nextAttemptAt ?? '?'})`}: ${how}\n(see pilot notify log ${app})`;
  });
  if (res.delivery.status === 'failed') process.exitCode = 1;
}

export async function notifyLog(app: string, opts: GlobalOptions & { limit?: string }): Promise<void> {
  const limit = opts.limit === undefined ? 50 : Number(opts.limit);
  const res = await apiClient(opts).call<{ deliveries: DeliveryRow[] }>(
    'GET',
    `${path(app, '/log')}?limit=${Number.isInteger(limit) ? limit : 50}`,
  );
  output(opts, res, () =>
    res.deliveries.length === 0
      ? `no notifications sent for ${app} yet`
      : table(
          ['ID', 'ENDPOINT', 'EVENT', 'STATUS', 'ATTEMPTS', 'CREATED', 'LAST ATTEMPT'],
          res.deliveries.map((d) => [
            d.id,
            `#${d.endpoint}`,
            d.event,
            d.status === 'pending' && d.nextAttemptAt ? `pending (retry ${d.nextAttemptAt.slice(11, 19)})` : d.status,
            d.attempts,
            d.createdAt.slice(0, 19).replace('T', ' '),
            d.log.length === 0 ? '-' : attemptLine(d.log[d.log.length - 1]!),
          ]),
        ),
  );
}
