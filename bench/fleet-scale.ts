/**
 * Control-plane memory with many nodes: a real `pilot server`, and N simulated agents (one process,
 * no runtime) that register with the join token and long-poll sync like real agents, their health
 * endpoint served by one small shared HTTP server. Prints the server's RSS and CPU time.
 *
 *   npm run build && node dist/bench/fleet-scale.js [nodes=1000] [seconds=10]
 *   PILOT_PROFILE_DIR=/tmp/prof node dist/bench/fleet-scale.js   # also writes a V8 CPU profile of the server
 */
import { createServer } from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { Harness } from '../test/integration/harness.js';

const N = Number(process.argv[2] ?? 1000);
const SECONDS = Number(process.argv[3] ?? 10);

function proc(pid: number): { rssMb: number; cpuS: number; userS: number; sysS: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const stat = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
  const userS = Number(stat[11]) / 100;
  const sysS = Number(stat[12]) / 100;
  return { rssMb: Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024, cpuS: userS + sysS, userS, sysS };
}

/** CPU seconds per thread name (main, GC helpers, libuv pool, workers). */
function threads(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const raw = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const name = raw.slice(raw.indexOf('(') + 1, raw.lastIndexOf(')'));
    const stat = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
    out.set(name, (out.get(name) ?? 0) + (Number(stat[11]) + Number(stat[12])) / 100);
  }
  return out;
}

async function main(): Promise<void> {
  const h = new Harness();
  let checks = 0;
  let syncs = 0;
  const failures = new Map<string, number>();
  const health = createServer((_req, res) => {
    checks++;
    res.end('{"ok":true}');
  });
  await new Promise<void>((r) => health.listen(0, '127.0.0.1', r));
  const healthUrl = `http://127.0.0.1:${(health.address() as { port: number }).port}`;
  const dispatcher = new Agent({ connections: N + 10, headersTimeout: 60_000 });
  let stop = false;
  try {
    const profile = process.env.PILOT_PROFILE_DIR;
    await h.startUp({}, 'server', undefined, profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []);
    const pid = h.up!.pid!;
    const join_ = readFileSync(join(h.home, 'join-token'), 'utf8').trim();
    const base = proc(pid);
    // Like real agents: each registers (retrying), then long-polls at once; all start together.
    let registered = 0;
    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    const count = (k: string): void => void failures.set(k, (failures.get(k) ?? 0) + 1);
    const simulate = async (i: number): Promise<void> => {
      let credential: string | undefined;
      while (!stop && credential === undefined) {
        try {
          const res = await request(`${h.api}/api/v1/agent/register`, {
            dispatcher,
            method: 'POST',
            headers: { authorization: `Bearer ${join_}`, 'content-type': 'application/json' },
            body: JSON.stringify({
              protocol: 1,
              name: `sim-${i}`,
              address: '127.0.0.1',
              apiUrl: healthUrl,
              agentToken: 'simulated-agent-token',
              cpus: 4,
              memoryMb: 8192,
            }),
          });
          if (res.statusCode === 200 || res.statusCode === 201) credential = ((await res.body.json()) as { credential: string }).credential;
          else {
            await res.body.dump();
            count(`register HTTP ${res.statusCode}`);
            await sleep(500);
          }
        } catch (err) {
          count(`register: ${(err as Error).message.slice(0, 80)}`);
          await sleep(500);
        }
      }
      registered++;
      while (!stop) {
        try {
          const res = await request(`${h.api}/api/v1/agent/sync`, {
            dispatcher,
            method: 'POST',
            headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
            body: JSON.stringify({ protocol: 1, instances: [], waitMs: 5000 }),
          });
          await res.body.dump();
          if (res.statusCode === 200) syncs++;
          else count(`sync HTTP ${res.statusCode}`);
        } catch (err) {
          count(`sync: ${(err as Error).message.slice(0, 80)}`);
          await sleep(500);
        }
      }
    };
    const t00 = performance.now();
    const loops = Array.from({ length: N }, (_, i) => simulate(i));
    while (registered < N) await sleep(100);
    const joinSecs = (performance.now() - t00) / 1000;
    await sleep(6000); // one long-poll round, so the measurement sees the steady state
    const t0 = proc(pid);
    const th0 = threads(pid);
    const [c0, s0] = [checks, syncs];
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const t1 = proc(pid);
    const th1 = threads(pid);
    const [c1, s1] = [checks, syncs];
    const nodes = (await h.apiCall('GET', '/api/v1/nodes')).json.nodes as { status: string }[];
    const ready = nodes.filter((n) => n.status === 'ready').length;
    console.log(`control plane with ${N} simulated nodes long-polling (${ready} ready):`);
    console.log(`  ${N} nodes registered in ${joinSecs.toFixed(1)} s, all at once`);
    console.log(`  RSS ${t1.rssMb.toFixed(1)} MB (idle before the nodes: ${base.rssMb.toFixed(1)} MB)`);
    const pct = (a: number, b: number): string => (((b - a) / SECONDS) * 100).toFixed(1);
    console.log(
      `  CPU ${pct(t0.cpuS, t1.cpuS)}% of one core over ${SECONDS} s (user ${pct(t0.userS, t1.userS)}%, system ${pct(t0.sysS, t1.sysS)}%)`,
    );
    console.log(
      `  ${((s1 - s0) / SECONDS).toFixed(0)} syncs/s answered, ${((c1 - c0) / SECONDS).toFixed(0)} active health checks/s received`,
    );
    if (failures.size > 0) console.log(`  sync failures: ${[...failures].map(([k, v]) => `${v}× ${k}`).join('; ')}`);
    console.log(
      `  by thread: ${[...th1]
        .map(([name, s]) => [name, pct(th0.get(name) ?? 0, s)] as const)
        .filter(([, p]) => Number(p) >= 0.5)
        .map(([n, p]) => `${n} ${p}%`)
        .join(', ')}`,
    );
    stop = true;
    await h.killUp(profile ? 'SIGTERM' : 'SIGKILL');
    await Promise.race([Promise.allSettled(loops), new Promise((r) => setTimeout(r, 2000))]);
  } finally {
    stop = true;
    await h.cleanup();
    health.close();
    await dispatcher.destroy();
  }
}

await main();
