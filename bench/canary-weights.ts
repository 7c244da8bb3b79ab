/**
 * Canary weight accuracy end to end: a canary whose steps wait for `pilot promote` (10 %, 50 %,
 * 100) is held at each weight while REQUESTS requests go through `pilot up`'s router; prints the
 * share the new revision answered at each weight (goal: within ±1 % of the weight).
 *
 *   npm run build && node dist/bench/canary-weights.js [requests=10000] [clients=8]
 */
import { Agent, request } from 'undici';
import { Harness, waitFor } from '../test/integration/harness.js';
import { appYaml, commitRevision, makeStrategyRepo } from '../test/integration/strategy-app.js';

const REQUESTS = Number(process.argv[2] ?? 10_000);
const CLIENTS = Number(process.argv[3] ?? 8);
const STRATEGY = 'type: canary\nsteps: [{weight: 10}, {weight: 50}, {weight: 100}]';

/** REQUESTS requests through the router: how many the new revision answered, and how many failed. */
async function measure(h: Harness, revision: number): Promise<{ hit: number; failed: number; total: number }> {
  const dispatcher = new Agent({ connections: CLIENTS });
  let next = 0;
  let hit = 0;
  let failed = 0;
  const client = async (): Promise<void> => {
    while (next++ < REQUESTS) {
      try {
        const res = await request(h.router + '/', { headers: { host: 'w.localhost' }, dispatcher });
        const body = await res.body.text();
        if (res.statusCode !== 200) failed++;
        else if (Number((JSON.parse(body) as { revision: string }).revision) === revision) hit++;
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, client));
  await dispatcher.close();
  return { hit, failed, total: REQUESTS };
}

async function main(): Promise<void> {
  const h = new Harness();
  try {
    await h.startUp();
    const repo = await makeStrategyRepo(h, 'w', 2, STRATEGY);
    const first = await h.cli(['run', repo]);
    if (first.code !== 0) throw new Error(first.stdout + first.stderr);
    await commitRevision(repo, 'good', appYaml('w', 2, STRATEGY));
    const run = h.cli(['run', repo]);
    console.log(`canary weight accuracy: ${REQUESTS} requests per weight, ${CLIENTS} clients through the router`);
    for (const weight of [10, 50]) {
      await waitFor(
        `the canary at ${weight}%`,
        async () => {
          const st = (await h.apiCall('GET', '/api/v1/apps/w')).json as { rollout: { weights: { canary: number } } | null };
          return st.rollout?.weights.canary === weight ? true : undefined;
        },
        120_000,
      );
      const m = await measure(h, 2);
      const share = (100 * m.hit) / (m.total - m.failed);
      console.log(
        `weight ${weight}%: revision 2 answered ${m.hit} of ${m.total - m.failed} (${share.toFixed(2)}%, off by ${(share - weight).toFixed(2)} points); failed ${m.failed}`,
      );
      const p = await h.cli(['promote', 'w']);
      if (p.code !== 0) throw new Error(p.stderr);
    }
    const r = await run;
    if (r.code !== 0) throw new Error(r.stdout + r.stderr);
  } finally {
    await h.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
