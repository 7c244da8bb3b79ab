/**
 * Rolling updates of 10 replicas under a steady request loop through `pilot up`'s router:
 *   1. maxSurge 1, maxUnavailable 0 on a node with room to spare;
 *   2. maxSurge 0, maxUnavailable 1 when the fleet has room for only 10 instances: each instance
 *      asks for a tenth of the node's CPUs (pilot.yaml resources.cpu), so an 11th cannot be placed.
 * Prints, per update: failed/total requests (goal 0), the rollout's time (start to finish as
 * recorded), and the most instances meant to run / the fewest ready seen at once.
 *
 *   npm run build && node dist/bench/rollout-rolling.js [clients=4]
 */
import { availableParallelism } from 'node:os';
import { Harness, sleep } from '../test/integration/harness.js';
import { appYaml, commitRevision, makeStrategyRepo, RequestLoop } from '../test/integration/strategy-app.js';

const CLIENTS = Number(process.argv[2] ?? 4);
const N = 10;

async function update(h: Harness, app: string, repo: string, yaml: string, label: string): Promise<void> {
  await commitRevision(repo, 'good', yaml);
  const loop = new RequestLoop(h.router, `${app}.localhost`, CLIENTS, 5);
  let watching = true;
  let maxRun = 0;
  let minReady = Infinity;
  const watch = (async () => {
    while (watching) {
      const st = (await h.apiCall('GET', `/api/v1/apps/${app}`)).json as { instances: { desired: string; state: string }[] };
      const run = st.instances.filter((i) => i.desired === 'run');
      maxRun = Math.max(maxRun, run.length);
      minReady = Math.min(minReady, run.filter((i) => i.state === 'ready').length);
      await sleep(100);
    }
  })();
  const r = await h.cli(['run', repo]);
  await sleep(1000);
  watching = false;
  await watch;
  const s = await loop.stop();
  const st = (await h.apiCall('GET', `/api/v1/apps/${app}`)).json as {
    rollouts: { status: string; reason?: string; startedAt: number; finishedAt?: number }[];
  };
  const rollout = st.rollouts[0]!;
  const took = rollout.finishedAt === undefined ? NaN : rollout.finishedAt - rollout.startedAt;
  console.log(
    `${label}: rollout ${rollout.status}${rollout.reason ? ` (${rollout.reason.split('\n')[0]})` : ''} in ${(took / 1000).toFixed(1)} s; ` +
      `failed ${s.failed}/${s.total} requests${s.failed ? ` (${s.failures.slice(0, 2).join('; ')})` : ''}; ` +
      `at most ${maxRun} instances meant to run, at least ${minReady} ready; pilot run exit ${r.code}`,
  );
}

async function main(): Promise<void> {
  const h = new Harness();
  try {
    await h.startUp();
    console.log(`rolling update of ${N} replicas, ${CLIENTS} client loops through the router, one node (${availableParallelism()} CPUs)`);
    const roomy = 'type: rolling\nmaxSurge: 1\nmaxUnavailable: 0';
    const repo = await makeStrategyRepo(h, 'roll', N, roomy);
    const first = await h.cli(['run', repo]);
    if (first.code !== 0) throw new Error(first.stdout + first.stderr);
    await update(h, 'roll', repo, appYaml('roll', N, roomy), 'maxSurge 1, maxUnavailable 0, room to spare');
    await h.cli(['apps', 'rm', 'roll']);

    // Room for exactly N instances: each asks for 1/N of the node's CPUs.
    const cpu = availableParallelism() / N;
    const tight = 'type: rolling\nmaxSurge: 0\nmaxUnavailable: 1';
    const resources = `resources:\n  cpu: ${cpu}`;
    const capRepo = await makeStrategyRepo(h, 'cap', N, tight);
    await commitRevision(capRepo, 'good', appYaml('cap', N, tight, resources));
    const capFirst = await h.cli(['run', capRepo]);
    if (capFirst.code !== 0) throw new Error(capFirst.stdout + capFirst.stderr);
    await update(h, 'cap', capRepo, appYaml('cap', N, tight, resources), `maxSurge 0, maxUnavailable 1, room for ${N} (cpu ${cpu} each)`);
    if (process.argv.includes('--surge-without-room')) {
      // What a surge does without room: the 11th instance cannot be placed.
      const surge = 'type: rolling\nmaxSurge: 1\nmaxUnavailable: 0';
      await update(h, 'cap', capRepo, appYaml('cap', N, surge, resources, '15s'), `maxSurge 1, maxUnavailable 0, room for ${N}`);
    }
  } finally {
    await h.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
