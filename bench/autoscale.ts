/**
 * Autoscaler step response: `pilot server` + two agents (127.0.0.2-3), an app with
 * `autoscale: { min: 1, max: 8, targetRps: 10 }` under an open-loop request rate through the router
 * (requests sent on a clock, not after the previous answer), stepped from LOW to HIGH req/s. Prints
 * the time from the step to the first autoscale decision, to the new count being ready, to the new
 * replicas all serving, the count over time, and over-/under-shoot against ceil(HIGH / 10).
 *
 *   npm run build && node dist/bench/autoscale.js [low=5] [high=45] [seconds=30]
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { allocatePort } from '../src/os/ports.js';
import { git, Harness, makeRepo, ROOT, sleep, tempDir } from '../test/integration/harness.js';

const LOW = Number(process.argv[2] ?? 5);
const HIGH = Number(process.argv[3] ?? 45);
const SECONDS = Number(process.argv[4] ?? 30);
const TARGET = 10;

async function main(): Promise<void> {
  const h = new Harness();
  try {
    const ports = { api: await allocatePort('127.0.0.1'), router: await allocatePort('127.0.0.1') };
    await h.startUp({}, 'server', ports);
    await h.startAgent('n1', '127.0.0.2', h.track(tempDir('n1')));
    await h.startAgent('n2', '127.0.0.3', h.track(tempDir('n2')));
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(
      join(repo, 'pilot.yaml'),
      `name: step\nhealth:\n  path: /healthz\n  interval: 1s\nautoscale: { min: 1, max: 8, targetRps: ${TARGET}, scaleDownWindow: 1m }\n`,
    );
    writeFileSync(
      join(repo, 'server.js'),
      `import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
const me = randomUUID();
createServer((req, res) => { res.writeHead(200); res.end(me); }).listen(Number(process.env.PORT));
`,
    );
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-qm', 'step');
    const r = await h.cli(['run', repo]);
    if (r.code !== 0) throw new Error(r.stderr);

    let rate = LOW;
    let stop = false;
    let sent = 0;
    let failed = 0;
    const servedAt = new Map<string, number>(); // instance → first answer (ms since the step)
    let stepAt = Infinity;
    // Open loop: a request every 1000/rate ms, whatever the answers do.
    const gen = (async () => {
      let next = performance.now();
      while (!stop) {
        next += 1000 / rate;
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
        sent++;
        request(h.router + '/', { headers: { host: 'step.localhost' } })
          .then(async (res) => {
            const body = await res.body.text();
            if (res.statusCode !== 200) failed++;
            else if (!servedAt.has(body)) servedAt.set(body, performance.now() - stepAt);
          })
          .catch(() => failed++);
      }
    })();
    const count = async (): Promise<{ replicas: number; ready: number }> => {
      const a = (await h.apiCall('GET', '/api/v1/apps/step')).json;
      const ready = (a.instances as { state: string; desired: string }[]).filter((i) => i.state === 'ready' && i.desired === 'run').length;
      return { replicas: a.app.replicas as number, ready };
    };
    // Settle at the low rate (its figures fill the window).
    await sleep(15_000);
    const before = await count();
    console.log(
      `autoscale step: ${LOW} → ${HIGH} req/s (open loop), target ${TARGET} req/s per instance; before: ${before.replicas} replica(s)`,
    );
    const ideal = Math.min(8, Math.max(1, Math.ceil(HIGH / TARGET)));
    stepAt = performance.now();
    rate = HIGH;
    const series: string[] = [];
    let firstChange: number | undefined;
    let readyAt: number | undefined;
    let peak = before.replicas;
    let last = before;
    for (let s = 1; s <= SECONDS; s++) {
      await sleep(1000);
      last = await count();
      const t = (performance.now() - stepAt) / 1000;
      if (firstChange === undefined && last.replicas !== before.replicas) firstChange = t;
      if (readyAt === undefined && last.replicas >= ideal && last.ready >= ideal) readyAt = t;
      peak = Math.max(peak, last.replicas);
      series.push(`${last.replicas}/${last.ready}`);
    }
    const measured = ((await h.apiCall('GET', '/api/v1/apps/step')).json.app.autoscale?.current?.load ?? 0) as number;
    stop = true;
    await gen;
    const serving = [...servedAt.values()].filter((ms) => ms > 0).sort((a, b) => a - b);
    const allServing = serving.length >= ideal - before.replicas ? serving[ideal - before.replicas - 1] : undefined;
    const f = (v: number | undefined): string => (v === undefined ? 'never' : `${v.toFixed(1)} s`);
    console.log(`  first decision after the step   ${f(firstChange)}`);
    console.log(`  ${ideal} replicas ready             ${f(readyAt)}`);
    console.log(`  new replicas all serving        ${f(allServing === undefined ? undefined : allServing / 1000)}`);
    console.log(`  count each second (replicas/ready): ${series.join(' ')}`);
    console.log(
      `  ideal ceil(${HIGH}/${TARGET}) = ${ideal}; peak ${peak} (overshoot ${peak - ideal}); end ${last.replicas} (undershoot ${Math.max(0, ideal - last.replicas)})`,
    );
    const perInstance = measured / last.replicas;
    console.log(
      `  measured ${measured.toFixed(1)} req/s at the end: ${perInstance.toFixed(1)} per instance = ${((100 * perInstance) / TARGET).toFixed(0)} % of the target (held within ±10 %)`,
    );
    console.log(`  requests: ${sent} sent, ${failed} failed`);
  } finally {
    await h.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
