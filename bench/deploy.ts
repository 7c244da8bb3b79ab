/**
 * Deploy benchmark for examples/hello: time of each step of `pilot run`, the platform's overhead
 * beyond the work itself, and the idle memory of `pilot up`. The peer is the same process done by
 * hand on this machine (git archive, npm ci, npm run build --if-present, tar, start the app with
 * node, poll until it answers): Pilot's figure over the by-hand figure is the ratio printed.
 *
 *   npm run build && node dist/bench/deploy.js [runs=3]
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { git, Harness, makeRepo, ROOT, sleep, tempDir, waitFor } from '../test/integration/harness.js';

const RUNS = Number(process.argv[2] ?? 3);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (x: number): string => `${x.toFixed(0)} ms`;

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function timed(argv: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): number {
  const t0 = performance.now();
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd, env, stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed`);
  return performance.now() - t0;
}

/** The same process by hand, no platform: returns each part's time. */
async function byHand(
  repo: string,
): Promise<{ checkout: number; install: number; build: number; pack: number; start: number; total: number }> {
  const ws = tempDir('byhand');
  const t0 = performance.now();
  try {
    const checkout = timed(['sh', '-c', `git -C "${repo}" archive HEAD | tar -x -C "${ws}"`], ws);
    const install = timed(['npm', 'ci', '--no-audit', '--no-fund'], ws);
    const build = timed(['npm', 'run', 'build', '--if-present'], ws);
    const pack = timed(['tar', '-czf', join(ws, '..', `${ws.split('/').pop()}.tgz`), '-C', ws, '.'], ws);
    const port = 20000 + Math.floor(Math.random() * 20000);
    const ts = performance.now();
    // Started the way Pilot starts it (a plain `node …` start script runs without npm), so the
    // app's own start time is the same on both sides.
    const app = spawn(process.execPath, ['server.js'], {
      cwd: ws,
      env: { ...process.env, PORT: String(port) },
      stdio: 'ignore',
      detached: true,
    });
    try {
      await waitFor('app by hand', async () => {
        const r = await request(`http://127.0.0.1:${port}/healthz`);
        await r.body.text();
        return r.statusCode === 200 || undefined;
      });
    } finally {
      process.kill(-app.pid!, 'SIGKILL');
    }
    const start = performance.now() - ts;
    return { checkout, install, build, pack, start, total: performance.now() - t0 };
  } finally {
    rmSync(ws, { recursive: true, force: true });
    rmSync(`${ws}.tgz`, { force: true });
  }
}

async function main(): Promise<void> {
  const h = new Harness();
  try {
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    await h.startUp();
    await sleep(5000);
    const idle = rssMb(h.up!.pid!);
    console.log(`idle RSS of pilot up (control plane + router + agent, no apps): ${idle.toFixed(1)} MB (goal <= 80 MB)`);

    const rows: Record<string, number[]> = { source: [], build: [], package: [], publish: [], deploy: [], wall: [] };
    for (let i = 0; i < RUNS; i++) {
      writeFileSync(join(repo, 'bench.txt'), `run ${i} ${Date.now()}\n`);
      await git(repo, 'add', '-A');
      await git(repo, 'commit', '-qm', `bench ${i}`);
      const t0 = performance.now();
      const r = await h.cli(['run', repo, '--json']);
      const wall = performance.now() - t0;
      if (r.code !== 0) throw new Error(`pilot run failed: ${r.stderr}`);
      const d = (JSON.parse(r.stdout) as { durations: Record<string, number> }).durations;
      for (const k of Object.keys(d)) rows[k]!.push(d[k]!);
      rows.wall!.push(wall);
    }
    console.log(`\npilot run examples/hello, median of ${RUNS} (each a new commit, so a new artifact):`);
    for (const [k, v] of Object.entries(rows)) console.log(`  ${k.padEnd(8)} ${ms(median(v))}`);

    const hand: Awaited<ReturnType<typeof byHand>>[] = [];
    for (let i = 0; i < RUNS; i++) hand.push(await byHand(repo));
    const hm = (k: keyof (typeof hand)[number]): number => median(hand.map((x) => x[k]));
    console.log(`\nthe same by hand (peer), median of ${RUNS}:`);
    for (const k of ['checkout', 'install', 'build', 'pack', 'start', 'total'] as const) console.log(`  ${k.padEnd(8)} ${ms(hm(k))}`);

    const overhead = median(rows.wall!) - hm('install') - hm('start');
    console.log(`\nplatform overhead beyond npm ci and the app's start: ${ms(overhead)} (goal <= 1000 ms)`);
    console.log(
      `  (by hand also pays npm run build --if-present, ${ms(hm('build'))} of npm start-up; pilot skips it when there is no build script)`,
    );
    console.log(`ratio pilot run / by hand (whole process): ${(median(rows.wall!) / hm('total')).toFixed(2)}x`);
    const after = rssMb(h.up!.pid!);
    console.log(`RSS of pilot up after ${RUNS} deploys: ${after.toFixed(1)} MB`);
  } finally {
    await h.cleanup();
  }
}

await main();
