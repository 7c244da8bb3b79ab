/**
 * Split accuracy and stickiness of the router (A/B experiments), over real sockets: two upstream
 * HTTP servers (revisions 1 and 2 of app "shop"), the router in this process, undici clients.
 *
 *   1. plain weighted split: N requests, revision 2 at 10 % and 50 % (smooth weighted round-robin)
 *   2. sticky split by cookie: N distinct users (first visits, no cookie), revision 2 at 10 % and 50 %
 *   3. returning users (USERS, cookies from step 2 at 50 %): the share that changes variant
 *        - across a router restart (the table reloaded from its JSON, as `pilot router` reloads
 *          its saved table, into a new router on a new port)
 *        - across a weight change of another app sharing the router
 *      (goal 0 for both), and the share of users each variant serves compared with the split.
 *   4. the bucket function alone over 1,000,000 random ids (no sockets): its bias, apart from the
 *      sampling noise of N users (a binomial: standard deviation sqrt(p(1-p)/N), 0.5 points at
 *      50 % and N = 10,000, so step 2 misses ±1 % about one run in twenty by chance alone).
 *
 *   npm run build && node dist/bench/sticky-split.js [requests=10000] [users=1000]
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { admitRoutes, type Route } from '../src/core/routes.js';
import { stickyBucket } from '../src/core/experiment.js';
import { startRouter, type Router } from '../src/router/proxy.js';
import { RoutingTable } from '../src/router/routing-table.js';

const N = Number(process.argv[2] ?? 10_000);
const USERS = Number(process.argv[3] ?? 1_000);
const CONCURRENCY = 16;

async function upstream(name: string): Promise<{ port: number; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(name);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

function routes(p1: number, p2: number, p3: number, bWeight: number, sticky: boolean, otherWeight: number): Route[] {
  return [
    {
      app: 'shop',
      hosts: ['shop.localhost'],
      backends: [
        { revision: 1, weight: 100 - bWeight, upstreams: [{ id: 'shop-1', host: '127.0.0.1', port: p1 }] },
        { revision: 2, weight: bWeight, upstreams: [{ id: 'shop-2', host: '127.0.0.1', port: p2 }] },
      ],
      ...(sticky ? { sticky: { by: { cookie: 'uid' }, seed: 'shop/1' } } : {}),
    },
    {
      app: 'other',
      hosts: ['other.localhost'],
      backends: [
        { revision: 1, weight: 100 - otherWeight, upstreams: [{ id: 'other-1', host: '127.0.0.1', port: p3 }] },
        { revision: 2, weight: otherWeight, upstreams: [{ id: 'other-2', host: '127.0.0.1', port: p3 }] },
      ],
    },
  ];
}

interface Answer {
  readonly variant: string;
  readonly cookie: string | undefined;
}

async function get(pool: Pool, cookie?: string): Promise<Answer> {
  const res = await pool.request({ path: '/', method: 'GET', headers: { host: 'shop.localhost', ...(cookie ? { cookie } : {}) } });
  const variant = await res.body.text();
  const raw = res.headers['set-cookie'];
  const set = raw === undefined ? undefined : (Array.isArray(raw) ? raw[0]! : raw).split(';')[0];
  return { variant, cookie: set };
}

/** `count` requests, CONCURRENCY at a time; `cookieOf(i)` the cookie of request i (undefined: none). */
async function run(pool: Pool, count: number, cookieOf: (i: number) => string | undefined): Promise<Answer[]> {
  const out = new Array<Answer>(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) {
        const i = next++;
        out[i] = await get(pool, cookieOf(i));
      }
    }),
  );
  return out;
}

const share = (answers: readonly Answer[]): number => answers.filter((a) => a.variant === 'b').length / answers.length;
const pct = (v: number): string => `${(v * 100).toFixed(2)} %`;

async function main(): Promise<void> {
  const [a, b, other] = await Promise.all([upstream('a'), upstream('b'), upstream('other')]);
  const table = new RoutingTable();
  let router: Router = await startRouter({ host: '127.0.0.1', port: 0, table });
  let pool = new Pool(router.url, { connections: CONCURRENCY });
  const lines: string[] = [];
  const started = performance.now();
  try {
    for (const w of [10, 50]) {
      table.set(routes(a.port, b.port, other.port, w, false, 50));
      const got = share(await run(pool, N, () => undefined));
      lines.push(`weighted split, ${N} requests, b at ${w} %:        b served ${pct(got)} (error ${pct(got - w / 100)})`);
    }
    let returning: Answer[] = [];
    for (const w of [10, 50]) {
      table.set(routes(a.port, b.port, other.port, w, true, 50));
      const firsts = await run(pool, N, () => undefined);
      const got = share(firsts);
      lines.push(`sticky split, ${N} distinct users, b at ${w} %:    b got ${pct(got)} of users (error ${pct(got - w / 100)})`);
      if (w === 50) returning = firsts.slice(0, USERS);
    }

    // Returning users, before anything changes: the baseline (must be 0).
    const same = await run(pool, USERS, (i) => returning[i]!.cookie);
    const movedSame = same.filter((x, i) => x.variant !== returning[i]!.variant).length;

    // A router restart: the table goes through JSON (the saved file) into a new table and router.
    const saved = JSON.stringify(routes(a.port, b.port, other.port, 50, true, 50));
    await pool.close();
    await router.close();
    const reloaded = new RoutingTable();
    reloaded.set(admitRoutes(JSON.parse(saved) as Route[]).routes);
    router = await startRouter({ host: '127.0.0.1', port: 0, table: reloaded });
    pool = new Pool(router.url, { connections: CONCURRENCY });
    const afterRestart = await run(pool, USERS, (i) => returning[i]!.cookie);
    const movedRestart = afterRestart.filter((x, i) => x.variant !== returning[i]!.variant).length;

    // Another app's weights change (90/10 → 10/90 → 0/100).
    let movedOther = 0;
    for (const ow of [10, 90, 100]) {
      reloaded.set(routes(a.port, b.port, other.port, 50, true, ow));
      const again = await run(pool, USERS, (i) => returning[i]!.cookie);
      movedOther += again.filter((x, i) => x.variant !== returning[i]!.variant).length;
    }
    const setAgain = afterRestart.filter((x) => x.cookie !== undefined).length;
    lines.push(`returning users (${USERS}, b at 50 %): changed variant with nothing changed: ${movedSame} (${pct(movedSame / USERS)})`);
    lines.push(
      `  across a router restart (table reloaded from JSON, new port): ${movedRestart} (${pct(movedRestart / USERS)}); cookies set again: ${setAgain}`,
    );
    lines.push(
      `  across 3 weight changes of another app:                     ${movedOther} of ${3 * USERS} (${pct(movedOther / (3 * USERS))})`,
    );
    const M = 1_000_000;
    let b10 = 0;
    let b50 = 0;
    for (let i = 0; i < M; i++) {
      const bucket = stickyBucket('shop/1', randomBytes(16).toString('base64url'));
      if (bucket >= 90) b10++;
      if (bucket >= 50) b50++;
    }
    lines.push(
      `bucket function, ${M} random ids: b at 10 % gets ${pct(b10 / M)}, at 50 % ${pct(b50 / M)} (sd of step 2 at 50 %: ${pct(Math.sqrt(0.25 / N))})`,
    );
    lines.push(`total ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    await pool.close();
    await router.close();
    await Promise.all([a.close(), b.close(), other.close()]);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

await main();
