/**
 * Container start/stop benchmark: how long the docker runtime takes from start() to the app
 * answering HTTP on its port, and how long stop() takes (SIGTERM, exit, log drain, removal), against
 * the docker CLI doing the same (`docker run -d --init --network host …`, `docker stop` + `docker
 * rm`) as the peer, and the process runtime for context. Same image, same app, ROUNDS rounds each,
 * medians and p90 printed; the ratio is Pilot over the docker CLI.
 *
 *   npm run build && node dist/bench/container-start.js [rounds=10]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allocatePort } from '../src/os/ports.js';
import { httpProbe } from '../src/agent/probes.js';
import { DockerRuntime } from '../src/agent/runtimes/docker-runtime.js';
import { ProcessRuntime } from '../src/agent/runtimes/process-runtime.js';
import { connectEngine, requireEngine } from '../src/docker/engine.js';
import { buildTestImage, removeImage, removeNodeContainers } from '../src/docker/test-images.js';
import { runCommand } from '../src/os/exec.js';

const ROUNDS = Number(process.argv[2] ?? 10);
const SERVER = `const http = require('node:http');
const s = http.createServer((q, r) => r.end('ok'));
s.listen(Number(process.env.PORT));
process.on('SIGTERM', () => s.close(() => process.exit(0)));
`;

async function untilAnswers(port: number): Promise<void> {
  const end = performance.now() + 20_000;
  while (performance.now() < end) {
    if ((await httpProbe({ host: '127.0.0.1', port, path: '/', timeoutMs: 500 })).ok) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`nothing answered on ${port}`);
}

async function docker(args: string[]): Promise<void> {
  const r = await runCommand(['docker', ...args], { cwd: '/', env: { PATH: '/usr/local/bin:/usr/bin:/bin' }, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')}: ${r.tail.join('\n')}`);
}

const ms = (xs: number[], q: number): string =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!.toFixed(0);

async function main(): Promise<void> {
  const engine = connectEngine();
  await requireEngine(engine);
  const node = `bench-${randomBytes(3).toString('hex')}`;
  const tag = `pilot-test/agent/bench-container:${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'pilot-bench-ctr-'));
  writeFileSync(join(dir, 'server.js'), SERVER);
  const results: Record<string, { start: number[]; stop: number[] }> = {
    pilot: { start: [], stop: [] },
    cli: { start: [], stop: [] },
    process: { start: [], stop: [] },
  };
  const rt = new DockerRuntime({ engine, node });
  try {
    const image = await buildTestImage(engine, tag, { 'server.js': SERVER }, ['node', '/app/server.js']);
    for (let i = 0; i < ROUNDS; i++) {
      // Pilot's docker runtime
      let port = await allocatePort();
      let t0 = performance.now();
      const h = await rt.start({
        instanceId: `b-${i}`,
        stateDir: join(dir, 'state', `b-${i}`),
        cwd: '/',
        argv: [],
        env: { PORT: String(port) },
        image,
      });
      await untilAnswers(port);
      results.pilot!.start.push(performance.now() - t0);
      t0 = performance.now();
      await rt.stop(h, 5_000);
      results.pilot!.stop.push(performance.now() - t0);
      // The docker CLI, same container settings
      port = await allocatePort();
      const name = `${node}-cli-${i}`;
      t0 = performance.now();
      await docker([
        'run',
        '-d',
        '--init',
        '--network',
        'host',
        '--label',
        `dev.pilot.node=${node}`,
        '-e',
        `PORT=${port}`,
        '--name',
        name,
        image,
      ]);
      await untilAnswers(port);
      results.cli!.start.push(performance.now() - t0);
      t0 = performance.now();
      await docker(['stop', '-t', '5', name]);
      await docker(['rm', name]);
      results.cli!.stop.push(performance.now() - t0);
      // The process runtime, for context
      port = await allocatePort();
      const prt = new ProcessRuntime();
      t0 = performance.now();
      const ph = await prt.start({
        instanceId: `p-${i}`,
        stateDir: join(dir, 'pstate', `p-${i}`),
        cwd: dir,
        argv: [process.execPath, join(dir, 'server.js')],
        env: { PORT: String(port) },
      });
      await untilAnswers(port);
      results.process!.start.push(performance.now() - t0);
      t0 = performance.now();
      await prt.stop(ph, 5_000);
      results.process!.stop.push(performance.now() - t0);
    }
  } finally {
    await rt.close();
    await removeNodeContainers(engine, node);
    await removeImage(engine, tag);
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`container start → answering HTTP, and stop (+ removal), ${ROUNDS} rounds, ms`);
  console.log('                           start p50  start p90   stop p50   stop p90');
  const row = (label: string, r: { start: number[]; stop: number[] }): void =>
    console.log(
      `${label.padEnd(26)} ${ms(r.start, 0.5).padStart(9)}  ${ms(r.start, 0.9).padStart(9)}  ${ms(r.stop, 0.5).padStart(9)}  ${ms(r.stop, 0.9).padStart(9)}`,
    );
  row('pilot docker runtime', results.pilot!);
  row('docker CLI (peer)', results.cli!);
  row('pilot process runtime', results.process!);
  const med = (xs: number[]): number => Number(ms(xs, 0.5));
  console.log(
    `ratio pilot/docker CLI: start ${(med(results.pilot!.start) / med(results.cli!.start)).toFixed(2)}, stop ${(med(results.pilot!.stop) / med(results.cli!.stop)).toFixed(2)}`,
  );
}

await main();
