/**
 * Isolation overhead of the process runtime: time from start() until a small HTTP app answers on
 * its port, with (a) no isolation, (b) its own uid, (c) its own uid + cgroup (where the machine has
 * cgroups); plus the stop time and the RSS of the per-instance log writer. Needs root for (b), (c).
 *
 *   npm run build && node dist/bench/isolation.js [runs=5]
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { spawnSync } from 'node:child_process';
import { createInstanceCgroup, detectCgroups, removeCgroup, type CgroupLayout } from '../src/agent/cgroups.js';
import { startArgv } from '../src/agent/runtimes/containment.js';
import { allocatePort } from '../src/os/ports.js';
import { readPidFile } from '../src/agent/runtimes/pid-file.js';
import { ProcessRuntime } from '../src/agent/runtimes/process-runtime.js';

const RUNS = Number(process.argv[2] ?? 5);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
/** Private memory (RssAnon): the node binary's pages (RssFile, ~35 MB) are shared by every node process. */
const privateMb = (pid: number): number =>
  Number(/RssAnon:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;

const root = mkdtempSync(join(tmpdir(), 'pilot-bench-iso-'));
chmodSync(root, 0o755);
writeFileSync(
  join(root, 'app.mjs'),
  "import { createServer } from 'node:http'; createServer((q, s) => s.end('ok')).listen(Number(process.env.PORT));",
  { mode: 0o644 },
);

async function answers(port: number): Promise<boolean> {
  try {
    const r = await request(`http://127.0.0.1:${port}/`, { headersTimeout: 1000, bodyTimeout: 1000 });
    await r.body.text();
    return r.statusCode === 200;
  } catch {
    return false;
  }
}

async function measure(label: string, user: { uid: number; gid: number } | undefined, cgroups: CgroupLayout): Promise<void> {
  const rt = new ProcessRuntime({ cgroups });
  const start: number[] = [];
  const stop: number[] = [];
  const logger: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const port = await allocatePort();
    const stateDir = join(root, 'state', `${label.replace(/\W/g, '')}-${i}`);
    const t0 = performance.now();
    const h = await rt.start({
      instanceId: `bench-${i}`,
      stateDir,
      cwd: root,
      argv: [process.execPath, join(root, 'app.mjs')],
      env: { PATH: '/usr/bin:/bin', PORT: String(port) },
      user,
      limits: { memoryMb: 256 },
    });
    while (!(await answers(port))) await new Promise((r) => setTimeout(r, 5));
    start.push(performance.now() - t0);
    const lg = readPidFile(stateDir)?.logger;
    if (lg) logger.push(privateMb(lg.pid));
    const t1 = performance.now();
    await rt.stop(h, 2000);
    stop.push(performance.now() - t1);
  }
  await rt.close();
  process.stdout.write(
    `${label.padEnd(28)} start→answers median ${median(start).toFixed(0)} ms (min ${Math.min(...start).toFixed(0)}, max ${Math.max(...start).toFixed(0)})   stop median ${median(stop).toFixed(0)} ms   log writer private RSS ${median(logger).toFixed(1)} MB\n`,
  );
}

/** The isolation steps alone, without an app: exec of /bin/true direct, through the wrapper (sh + setpriv), and with a cgroup made, joined and removed. */
function stepCosts(cg: CgroupLayout): void {
  const n = 30;
  const time = (label: string, fn: (i: number) => void): void => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn(i);
    process.stdout.write(`${label.padEnd(44)} ${((performance.now() - t0) / n).toFixed(1)} ms each\n`);
  };
  const run = (argv: string[]): void => {
    const r = spawnSync(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status}`);
  };
  time('exec /bin/true', () => run(['/bin/true']));
  time('exec via sh + setpriv (own uid)', () => run(startArgv(['/bin/true'], [], { uid: 64998, gid: 64998 })));
  if (cg.kind !== 'none') {
    time(`exec via wrapper + cgroup ${cg.kind} made/joined/removed`, (i) => {
      const c = createInstanceCgroup(cg, `bench-step-${process.pid}-${i}`, { memoryMb: 256, cpu: 1, pids: 4096 })!;
      run(
        startArgv(
          ['/bin/true'],
          c.dirs.map((d) => join(d, 'cgroup.procs')),
          { uid: 64998, gid: 64998 },
        ),
      );
      removeCgroup(c);
    });
  }
}

try {
  const none: CgroupLayout = { kind: 'none', reason: 'bench' };
  if (process.getuid?.() === 0) stepCosts(detectCgroups());
  await measure('no isolation', undefined, none);
  if (process.getuid?.() === 0) {
    await measure('own uid', { uid: 64998, gid: 64998 }, none);
    const cg = detectCgroups();
    if (cg.kind !== 'none') await measure(`own uid + cgroup ${cg.kind}`, { uid: 64998, gid: 64998 }, cg);
    else process.stdout.write(`cgroups: ${cg.reason}\n`);
  } else {
    process.stdout.write('not root: own uid and cgroup not measured\n');
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
