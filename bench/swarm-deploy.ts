/**
 * Swarm against Pilot's own agents, for the same app: `pilot up` (control plane, router, the local
 * agent with its Docker engine) plus a Swarm target on the same engine (`docker swarm init` when
 * none is active, left at the end). Two apps with the same code and pilot.yaml, one with `target:`;
 * each round changes one line of both and deploys them in turn (alternating who goes first), and
 * prints the deploy step (revision to every instance ready and the switch, from the run's log) and
 * the whole `pilot run` (build and publish included), median over the rounds.
 *
 *   npm run build && node dist/bench/swarm-deploy.js [rounds=3]
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectEngine } from '../src/docker/engine.js';
import { ensureBaseImage } from '../src/docker/test-images.js';
import { git, Harness, makeRepo, tempDir } from '../test/integration/harness.js';

const ROUNDS = Number(process.argv[2] ?? 3);
const engine = connectEngine();
const T = `bsw${process.pid}`;
const ENV = { PILOT_IMAGE_PREFIX: 'pilot-test/swarm-bench' };
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const server = (v: number): string => `require('node:http').createServer((q, s) => s.end('v${v}')).listen(Number(process.env.PORT));\n`;

async function main(): Promise<void> {
  await ensureBaseImage(engine);
  let initialised = false;
  if ((await engine.info()).Swarm?.LocalNodeState !== 'active') {
    await engine.swarmInit({ ListenAddr: '127.0.0.1:2377', AdvertiseAddr: '127.0.0.1:2377' });
    initialised = true;
  }
  const h = new Harness();
  const apps = { agents: `bag${process.pid}`, swarm: `bsa${process.pid}` };
  const repos: Record<string, string> = {};
  try {
    await h.startUp(ENV, 'up');
    const add = await h.cli(['targets', 'add', T, '--docker', 'unix:///var/run/docker.sock', '--ports', '24000-24900']);
    if (add.code !== 0) throw new Error(add.stderr);
    for (const [kind, app] of Object.entries(apps)) {
      const dir = h.track(tempDir(`bench-${kind}`));
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: app, scripts: { start: 'node server.js' } }));
      writeFileSync(join(dir, 'server.js'), server(0));
      writeFileSync(join(dir, 'pilot.yaml'), `runtime: docker\nreplicas: 2\n${kind === 'swarm' ? `target: ${T}\n` : ''}`);
      repos[kind] = h.track(await makeRepo(dir));
    }
    const deploy: Record<string, number[]> = { agents: [], swarm: [] };
    const whole: Record<string, number[]> = { agents: [], swarm: [] };
    for (let round = 0; round <= ROUNDS; round++) {
      const order = round % 2 === 0 ? (['agents', 'swarm'] as const) : (['swarm', 'agents'] as const);
      for (const kind of order) {
        const repo = repos[kind]!;
        if (round > 0) {
          writeFileSync(join(repo, 'server.js'), server(round));
          await git(repo, 'commit', '-qam', `round ${round}`);
        }
        const t0 = performance.now();
        const r = await h.cli(['run', repo], { env: ENV });
        const ms = performance.now() - t0;
        if (r.code !== 0) throw new Error(`${kind}: ${r.stdout}${r.stderr}`);
        const step = /deploy done in ([\d.]+)(ms|s)/.exec(r.stdout);
        if (round === 0 || !step) continue; // round 0: the first deploy of each app (a warm-up)
        deploy[kind]!.push(Number(step[1]) * (step[2] === 's' ? 1000 : 1));
        whole[kind]!.push(ms);
      }
    }
    console.log(`swarm-deploy: ${ROUNDS} rounds, 2 replicas, a one-line change each (median)`);
    for (const kind of ['agents', 'swarm'] as const)
      console.log(
        `  ${kind.padEnd(7)} deploy step ${(median(deploy[kind]!) / 1000).toFixed(2)} s   pilot run ${(median(whole[kind]!) / 1000).toFixed(2)} s   (deploy steps: ${deploy[kind]!.map((x) => (x / 1000).toFixed(2)).join(', ')})`,
      );
    for (const app of Object.values(apps)) await h.cli(['apps', 'rm', app, '--yes']);
    await new Promise((r) => setTimeout(r, 5000)); // the bridge removes the Swarm services
  } finally {
    await h.cleanup();
    const filters = { label: [`dev.pilot.target=${T}`] };
    for (const s of await engine.listServices({ filters }).catch(() => []))
      await engine
        .getService(s.ID)
        .remove()
        .catch(() => undefined);
    for (const c of await engine.listContainers({ all: true, filters: { label: [`dev.pilot.app=${apps.agents}`] } }).catch(() => []))
      await engine
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => undefined);
    for (const app of Object.values(apps))
      for (const i of await engine.listImages({ filters: JSON.stringify({ label: [`dev.pilot.app=${app}`] }) }).catch(() => []))
        await engine
          .getImage(i.Id)
          .remove({ force: true })
          .catch(() => undefined);
    if (initialised) await engine.swarmLeave({ force: true }).catch(() => undefined);
  }
}

await main();
