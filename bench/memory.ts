/**
 * Memory: the resident set (RSS, from /proc) of an idle `pilot up`, an idle `pilot agent` and a bare
 * `node` side by side, after the same idle time; and a soak mode that deploys examples/hello and
 * sends steady traffic through the router (plus one API call a second), printing the RSS and V8
 * heap of `pilot up` (its /metrics) and the router process every minute, then the growth.
 *
 *   npm run build && node dist/bench/memory.js [--idle SECONDS=30] [--soak MINUTES] [--rps 20]
 *
 * Goals (issue #14): idle `pilot up` <= 80 MB, idle agent <= 50 MB; no growth over a soak.
 * `pilot up` is started the way `npm start` starts it (--max-semi-space-size=2).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { Harness, makeRepo, ROOT, sleep, tempDir } from '../test/integration/harness.js';

const { values } = parseArgs({
  options: { idle: { type: 'string', default: '30' }, soak: { type: 'string' }, rps: { type: 'string', default: '20' } },
});
const IDLE_S = Number(values.idle);
const SOAK_MIN = values.soak === undefined ? undefined : Number(values.soak);
const RPS = Number(values.rps);

/** RSS of a process in MB (2^20 bytes), or NaN when it is gone. */
function rssMb(pid: number | undefined): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** V8 heap used by `pilot up` in MB, from its Prometheus metrics (prom-client's default metrics). */
async function heapMb(h: Harness): Promise<number> {
  const res = await request(`${h.api}/metrics`, { headers: { authorization: `Bearer ${h.token}` } });
  const text = await res.body.text();
  const m = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
  return m ? Number(m[1]) / 2 ** 20 : NaN;
}

const mb = (x: number): string => `${x.toFixed(1)} MB`;

async function idle(h: Harness): Promise<void> {
  const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  try {
    await h.startUp();
    const agent = await h.startAgent('bench-mem', '127.0.0.2', h.track(tempDir('agent')));
    // RSS moves with each GC: besides the figure at the end, the range over samples every 2 s in
    // the second half of the idle time.
    const pids = { up: h.up?.pid, router: h.routerPid(), agent: agent.pid, bare: bare.pid };
    const samples: Record<keyof typeof pids, number[]> = { up: [], router: [], agent: [], bare: [] };
    const started = performance.now();
    while (performance.now() - started < IDLE_S * 1000) {
      await sleep(Math.min(2000, Math.max(0, IDLE_S * 1000 - (performance.now() - started))));
      if (performance.now() - started >= (IDLE_S * 1000) / 2)
        for (const k of Object.keys(pids) as (keyof typeof pids)[]) samples[k].push(rssMb(pids[k]));
    }
    const row = (k: keyof typeof pids): string => {
      const xs = samples[k].filter((x) => !Number.isNaN(x));
      return `${mb(rssMb(pids[k]))}  (${xs.length > 0 ? `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}` : 'n/a'} over the 2nd half)`;
    };
    console.log(`idle RSS after ${IDLE_S} s (MB = 2^20 bytes), Node ${process.version}:`);
    console.log(`  pilot up (control plane + local agent)   ${row('up')}   goal <= 80 MB`);
    console.log(`  its router process (pilot router)        ${row('router')}`);
    console.log(`  pilot agent (joined, no instances)       ${row('agent')}   goal <= 50 MB`);
    console.log(`  bare node (setInterval)                  ${row('bare')}`);
    console.log(`  pilot up V8 heap used                    ${mb(await heapMb(h))}`);
  } finally {
    bare.kill('SIGKILL');
    await once(bare, 'exit');
  }
}

async function soak(h: Harness, minutes: number): Promise<void> {
  const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
  await h.startUp();
  const r = await h.cli(['run', repo, '--json']);
  if (r.code !== 0) throw new Error(`pilot run failed: ${r.stderr}`);
  let sent = 0;
  let failed = 0;
  let stop = false;
  // Steady traffic: RPS requests a second through the router to the app, one API call a second.
  const traffic = (async () => {
    const period = 1000 / RPS;
    let next = performance.now();
    while (!stop) {
      next += period;
      const res = await h.viaRouter('hello.localhost').catch(() => ({ status: 0 }));
      sent++;
      if (res.status !== 200) failed++;
      if (sent % RPS === 0) await h.apiCall('GET', '/api/v1/apps').catch(() => undefined);
      await sleep(Math.max(0, next - performance.now()));
    }
  })();
  const rows: { min: number; rss: number; heap: number; router: number }[] = [];
  try {
    console.log(`soak: examples/hello, ${RPS} req/s through the router + 1 API call/s, ${minutes} min`);
    console.log('| minute | pilot up RSS | pilot up heap used | router RSS | requests (failed) |');
    console.log('|---|---|---|---|---|');
    for (let min = 0; min <= minutes; min++) {
      if (min > 0) await sleep(60_000);
      const row = { min, rss: rssMb(h.up?.pid), heap: await heapMb(h), router: rssMb(h.routerPid()) };
      rows.push(row);
      console.log(`| ${min} | ${mb(row.rss)} | ${mb(row.heap)} | ${mb(row.router)} | ${sent} (${failed}) |`);
    }
  } finally {
    stop = true;
    await traffic;
  }
  // Growth from minute 1 (after warm-up: JIT, caches filled once) to the end.
  const from = rows[Math.min(1, rows.length - 1)]!;
  const to = rows[rows.length - 1]!;
  console.log(
    `growth minute ${from.min} → ${to.min}: pilot up RSS ${(to.rss - from.rss).toFixed(1)} MB, heap ${(to.heap - from.heap).toFixed(1)} MB, router RSS ${(to.router - from.router).toFixed(1)} MB; ${sent} requests, ${failed} failed`,
  );
}

async function main(): Promise<void> {
  const h = new Harness();
  try {
    if (SOAK_MIN === undefined) await idle(h);
    else await soak(h, SOAK_MIN);
  } finally {
    await h.cleanup();
  }
}

await main();
