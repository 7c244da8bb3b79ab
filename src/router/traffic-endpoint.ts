/**
 * The router's figures for the control plane: `GET /traffic?window=60s[&app=NAME]` on the router
 * process's loopback admin port, with the router token (router-process.ts checks it). It answers
 * the summaries of every (app, revision) it has seen in the window, as plain data the control
 * plane merges across routers and turns into req/s, error rate and percentiles
 * (control/traffic-routes.ts). Pull, not push: the figures are as fresh as the question, and the
 * table sync's long poll stays as it is.
 */
import type { ServerResponse } from 'node:http';
import { fail } from '../core/errors.js';
import { LATENCY_LAYOUT, parseTrafficWindow } from '../core/traffic-window.js';
import type { RevisionTraffic, RouterMetrics } from './metrics.js';

/** What GET /traffic answers. */
export interface TrafficAnswer {
  readonly layout: string;
  readonly windowMs: number;
  readonly revisions: readonly RevisionTraffic[];
}

export const TRAFFIC_PATH = '/traffic';

/** Answer a GET /traffic (already authenticated) from the router's metrics. */
export function serveTraffic(metrics: RouterMetrics, url: URL, res: ServerResponse): void {
  const window = parseTrafficWindow(url.searchParams.get('window') ?? undefined);
  if ('error' in window) {
    res
      .writeHead(400, { 'content-type': 'application/json' })
      .end(JSON.stringify({ error: fail.trafficWindowRefused({ problem: window.error }).toJSON() }));
    return;
  }
  const app = url.searchParams.get('app') ?? undefined;
  const answer: TrafficAnswer = { layout: LATENCY_LAYOUT, windowMs: window.ms, revisions: metrics.traffic(window.ms, app) };
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
}
