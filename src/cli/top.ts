/**
 * `pilot top [APP]`: live traffic per app and revision (req/s, status counts, error rate, p50/p99)
 * from GET /api/v1/traffic (or /apps/APP/traffic), refreshed every `--interval`. On a terminal the
 * table is redrawn in place; otherwise (a pipe, a file) each refresh is printed as plain lines
 * under a timestamp, and `--once` prints one refresh and exits. `--json`: one JSON document per
 * refresh, one per line.
 */
import { parseDuration } from '../core/duration.js';
import { isPilotError, fail } from '../core/errors.js';
import type { AppTraffic } from '../control/traffic-routes.js';
import { apiClient, table, type GlobalOptions } from './context.js';

export interface TopOptions extends GlobalOptions {
  once?: boolean;
  interval?: string;
  window?: string;
}

/** Errors worth waiting out in live mode: the next refresh may succeed. */
const TRANSIENT = new Set(['unavailable', 'server_unreachable', 'internal']);

const ms = (v: number | null): string =>
  v === null ? '-' : v < 10 ? `${v.toFixed(2)}ms` : v < 1000 ? `${v.toFixed(0)}ms` : `${(v / 1000).toFixed(2)}s`;

/** The table of one refresh. */
export function renderTop(apps: readonly AppTraffic[]): string {
  const rows = apps.flatMap((a) =>
    a.revisions.length === 0
      ? [[a.app, '-', '0.0', 0, 0, 0, 0, '0.0%', '-', '-']]
      : a.revisions.map((r) => [
          a.app,
          r.revision === null ? 'none' : `${r.revision}${r.active ? '*' : ''}`,
          r.rps.toFixed(1),
          r.requests,
          r.status['2xx'] + r.status['3xx'],
          r.status['4xx'],
          r.status['5xx'],
          `${(r.errorRate * 100).toFixed(1)}%`,
          ms(r.latencyMs.p50),
          ms(r.latencyMs.p99),
        ]),
  );
  if (rows.length === 0) return 'no apps';
  return table(['APP', 'REV', 'REQ/S', 'REQUESTS', '2XX+3XX', '4XX', '5XX', 'ERRORS', 'P50', 'P99'], rows);
}

export async function top(app: string | undefined, opts: TopOptions): Promise<void> {
  const api = apiClient(opts);
  const intervalMs = parseDuration(opts.interval ?? '2s');
  if (intervalMs === undefined || intervalMs < 500) {
    throw fail.invalidInterval({ interval: opts.interval });
  }
  const qs = `?window=${encodeURIComponent(opts.window ?? '10s')}`;
  const path = app === undefined ? `/api/v1/traffic${qs}` : `/api/v1/apps/${encodeURIComponent(app)}/traffic${qs}`;
  const live = opts.once !== true;
  const tty = process.stdout.isTTY === true && opts.json !== true;

  for (;;) {
    let text: string;
    try {
      const res =
        app === undefined
          ? await api.call<{ windowSeconds: number; apps: AppTraffic[] }>('GET', path)
          : await api.call<{ windowSeconds: number } & AppTraffic>('GET', path);
      const apps = 'apps' in res ? res.apps : [res];
      if (opts.json) text = JSON.stringify({ at: new Date().toISOString(), windowSeconds: res.windowSeconds, apps });
      else {
        const head = `${new Date().toISOString().slice(11, 19)}  last ${res.windowSeconds}s${live ? `, every ${intervalMs / 1000}s` : ''}  (* = active revision; REV none: no ready instance)`;
        text = `${head}\n${renderTop(apps)}`;
      }
    } catch (err) {
      // A server or router that is restarting: say so, and try again at the next refresh.
      if (!live || !isPilotError(err) || !TRANSIENT.has(err.code)) throw err;
      text = `${new Date().toISOString().slice(11, 19)}  ${err.message}${err.hint ? `\nhint: ${err.hint}` : ''}`;
    }
    if (tty) process.stdout.write(`\x1b[H\x1b[2J${text}\n\nCtrl-C to quit\n`);
    else process.stdout.write(`${text}\n${opts.json ? '' : '\n'}`);
    if (!live) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
