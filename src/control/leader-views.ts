/**
 * Several replicas: a few answers are made of what only the leader holds in memory (node health
 * from its node monitor, hence instances shown `lost`; orphans agents reported; an app's autoscaler
 * status and unplaced reason; route problems). A follower asked for one of them passes the request
 * on to the leader and answers what it says (`x-pilot-answered-by` names it); when the leader does
 * not answer, the follower answers from its own view, which is right about everything the store
 * holds.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { request } from '../http/undici.js';
import type { Leadership } from './leadership.js';

/** GET paths whose answer is the leader's view. */
const LEADER_VIEWS = /^\/api\/v1\/(nodes|orphans|apps|apps\/[^/?]+)(\?|$)/;
/** Set on the request a follower passes on: the leader never passes it on again. */
const VIA = 'x-pilot-via-replica';

export interface LeaderViewDeps {
  /** This replica's leadership: whether it leads (then it answers itself), and the lease row. */
  leadership(): Leadership;
  /** The admin token (every replica has the same). */
  adminToken: string;
  /** This replica's own address (a lease row naming it: answer here). */
  selfUrl(): string;
  log: Logger;
}

export function installLeaderViews(api: FastifyInstance, d: LeaderViewDeps): void {
  // The lease row read at most once a second, not once per request.
  let cached: { at: number; url: string | undefined } | undefined;
  const leaderUrl = async (): Promise<string | undefined> => {
    if (cached === undefined || performance.now() - cached.at > 1000) {
      const l = (await d.leadership().cluster())?.leader;
      cached = { at: performance.now(), url: l && !l.expired ? l.url : undefined };
    }
    return cached.url;
  };
  api.addHook('onRequest', async (req, reply) => {
    if (req.method !== 'GET' || !LEADER_VIEWS.test(req.url) || req.headers[VIA] !== undefined || d.leadership().leading()) return;
    const leader = await leaderUrl().catch(() => undefined);
    if (leader === undefined || leader === d.selfUrl()) return;
    try {
      const res = await request(leader + req.url, {
        headers: { authorization: `Bearer ${d.adminToken}`, [VIA]: d.selfUrl() },
        headersTimeout: 3000,
        bodyTimeout: 3000,
      });
      const body = await res.body.text();
      const type = res.headers['content-type'];
      void reply
        .code(res.statusCode)
        .header('content-type', typeof type === 'string' ? type : 'application/json; charset=utf-8')
        .header('x-pilot-answered-by', leader);
      return reply.send(body);
    } catch (err) {
      d.log.debug({ err: (err as Error).message, leader, url: req.url }, 'the leader did not answer; answering from this replica');
      return;
    }
  });
}
