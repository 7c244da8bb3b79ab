/**
 * A bad canary under a steady request loop: a revision answering every request 500 (its health
 * check passes) is deployed as a canary with the default analysis (max error rate 1 %, 50 requests,
 * 30 s window) and its first step's weight, while client loops call the app through `pilot up`'s
 * router. Prints, per trial: the time from the first 5xx the clients saw to the last answer of the
 * canary (after it, all traffic is on stable), and how many requests failed on the way (goal: ≤ 10 s).
 *
 *   npm run build && node dist/bench/rollout-canary.js [trials=3] [clients=4]
 */
import { Harness } from '../test/integration/harness.js';
import { appYaml, commitRevision, makeStrategyRepo, RequestLoop } from '../test/integration/strategy-app.js';

const TRIALS = Number(process.argv[2] ?? 3);
const CLIENTS = Number(process.argv[3] ?? 4);
// The default analysis; the first step's weight and pause as the default steps (10 %, 1 m).
const STRATEGY = 'type: canary';

async function main(): Promise<void> {
  const h = new Harness();
  try {
    await h.startUp();
    const repo = await makeStrategyRepo(h, 'bench', 2, STRATEGY);
    const first = await h.cli(['run', repo]);
    if (first.code !== 0) throw new Error(first.stdout + first.stderr);
    console.log(`bad canary (500 on every request), default steps and analysis, ${CLIENTS} client loops through the router`);
    const rows: { toStable: number; failed: number; total: number; canaryRequests: number }[] = [];
    for (let t = 1; t <= TRIALS; t++) {
      await commitRevision(repo, 'fail500', appYaml('bench', 2, STRATEGY));
      const loop = new RequestLoop(h.router, 'bench.localhost', CLIENTS, 5);
      const r = await h.cli(['run', repo]);
      await new Promise((res) => setTimeout(res, 2000));
      const s = await loop.stop();
      if (r.code === 0) throw new Error(`the bad canary was promoted: ${r.stdout}`);
      const reason = /canary analysis failed[^\n]*/.exec(r.stdout + r.stderr)?.[0] ?? '(no reason found)';
      const stable = (await h.apiCall('GET', '/api/v1/apps/bench')).json.app.activeRevision as number;
      const canary = s.seen.filter((x) => x.status === 500 || (x.revision !== null && x.revision !== stable));
      const firstErr = Math.min(...s.seen.filter((x) => x.status >= 500).map((x) => x.end));
      const lastCanary = Math.max(...canary.map((x) => x.end));
      const after = s.seen.filter((x) => x.start > lastCanary);
      if (after.some((x) => x.revision !== stable)) throw new Error('traffic after the rollback not all on stable');
      rows.push({ toStable: lastCanary - firstErr, failed: s.failed, total: s.total, canaryRequests: canary.length });
      console.log(
        `trial ${t}: first 5xx → all traffic on stable ${(lastCanary - firstErr).toFixed(0)} ms; failed ${s.failed}/${s.total} requests; ${reason}`,
      );
      // Every trial starts from the same place: the canary's instances gone.
      for (let k = 0; k < 100; k++) {
        const st = (await h.apiCall('GET', '/api/v1/apps/bench')).json as { instances: { revision: number; state: string }[] };
        if (!st.instances.some((i) => i.revision !== stable && i.state !== 'stopped')) break;
        await new Promise((res) => setTimeout(res, 200));
      }
    }
    const worst = rows.reduce((a, b) => (b.toStable > a.toStable ? b : a));
    const mean = rows.reduce((a, b) => a + b.toStable, 0) / rows.length;
    console.log(
      `summary: first 5xx → stable mean ${mean.toFixed(0)} ms, worst ${worst.toStable.toFixed(0)} ms (goal ≤ 10000 ms); failed requests ${rows
        .map((r) => r.failed)
        .join(', ')}`,
    );
  } finally {
    await h.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
