/**
 * A rollout under load on each data plane: `pilot up` (the embedded router, its own process) and
 * `pilot up --router haproxy`, the same app (2 replicas) deployed again blue-green (the default)
 * and as a canary (30 %, then 100 %) while client loops send requests through the router, one after
 * another (keep-alive, connections re-opened now and then). Prints per router and rollout: failed /
 * total requests (goal 0) and the requests per second the loop got during the rollout (the loop is
 * paced by the app and the machine, not a saturation test: the figure shows the rollout does not
 * stall traffic).
 *
 *   npm run build && node dist/bench/rollout-routers.js [clients=4]
 */
import { existsSync } from 'node:fs';
import { Harness, sleep } from '../test/integration/harness.js';
import { appYaml, commitRevision, makeStrategyRepo, RequestLoop } from '../test/integration/strategy-app.js';

const CLIENTS = Number(process.argv[2] ?? 4);
const CANARY = 'type: canary\nsteps: [{weight: 30, pause: 3s}, {weight: 100}]\nanalysis: {minRequests: 0, allowIdle: true}';

async function rollout(h: Harness, app: string, repo: string, yaml: string, label: string): Promise<void> {
  await commitRevision(repo, 'good', yaml);
  const loop = new RequestLoop(h.router, `${app}.localhost`, CLIENTS, 0);
  await sleep(500);
  const t0 = performance.now();
  const r = await h.cli(['run', repo]);
  const took = performance.now() - t0;
  await sleep(500);
  const s = await loop.stop();
  const during = s.seen.filter((x) => x.start >= t0 && x.end <= t0 + took);
  console.log(
    `  ${label.padEnd(28)} failed ${s.failed}/${s.total}` +
      `${s.failed ? ` (${s.failures.slice(0, 2).join('; ')})` : ''}; ${(during.length / (took / 1000)).toFixed(0)} req/s during the ` +
      `${(took / 1000).toFixed(1)} s of pilot run; 2xx by revision ${JSON.stringify(s.okByRevision)}; exit ${r.code}`,
  );
}

async function main(): Promise<void> {
  for (const router of ['pilot', 'haproxy'] as const) {
    if (router === 'haproxy' && !existsSync(process.env.PILOT_HAPROXY_BIN ?? '/usr/sbin/haproxy')) {
      console.log('haproxy: not installed (apt-get install haproxy), skipped');
      continue;
    }
    const h = new Harness();
    try {
      await h.startUp({}, 'up', { api: 0, router: 0 }, [], ['--router', router]);
      const app = `bench-${router}`;
      const repo = await makeStrategyRepo(h, app, 2, undefined);
      const first = await h.cli(['run', repo]);
      if (first.code !== 0) throw new Error(first.stdout + first.stderr);
      console.log(`router ${router === 'pilot' ? 'embedded (pilot up)' : 'haproxy (pilot up --router haproxy)'}, ${CLIENTS} client loops:`);
      await rollout(h, app, repo, appYaml(app, 2, undefined), 'blue-green');
      await rollout(h, app, repo, appYaml(app, 2, CANARY), 'canary 30 % then 100 %');
    } finally {
      await h.cleanup();
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
