/**
 * Control-plane memory with many nodes: a real `pilot server`, and N simulated agents (one process,
 * no runtime) that register with the join token and long-poll sync like real agents, their health
 * endpoint served by one small shared HTTP server. Prints the server's RSS and CPU time.
 *
 *   npm run build && node dist/bench/fleet-scale.js [nodes=1000] [seconds=10]
 */
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { Harness } from '../test/integration/harness.js';

const N = Number(process.argv[2] ?? 1000);
const SECONDS = Number(process.argv[3] ?? 10);

function proc(pid: number): { rssMb: number; cpuS: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const stat = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
  return { rssMb: Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024, cpuS: (Number(stat[11]) + Number(stat[12])) / 100 };
}

async function main(): Promise<void> {
  const h = new Harness();
  const health = createServer((_req, res) => res.end('{"ok":true}'));
  await new Promise<void>((r) => health.listen(0, '127.0.0.1', r));
  const healthUrl = `http://127.0.0.1:${(health.address() as { port: number }).port}`;
  const dispatcher = new Agent({ connections: N + 10, headersTimeout: 60_000 });
  let stop = false;
  try {
    await h.startUp({}, 'server');
    const pid = h.up!.pid!;
    const join_ = readFileSync(join(h.home, 'join-token'), 'utf8').trim();
    const base = proc(pid);
    const creds: string[] = [];
    for (let i = 0; i < N; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, N - i) }, async (_, k) => {
        const res = await request(`${h.api}/api/v1/agent/register`, {
          dispatcher, method: 'POST', headers: { authorization: `Bearer ${join_}`, 'content-type': 'application/json' },
          body: JSON.stringify({ protocol: 1, name: `sim-${i + k}`, address: '127.0.0.1', apiUrl: healthUrl, agentToken: 'simulated-agent-token', cpus: 4, memoryMb: 8192 }),
        });
        return ((await res.body.json()) as { credential: string }).credential;
      }));
      creds.push(...batch);
    }
    const loops = creds.map(async (credential) => {
      while (!stop) {
        try {
          const res = await request(`${h.api}/api/v1/agent/sync`, {
            dispatcher, method: 'POST', headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
            body: JSON.stringify({ protocol: 1, instances: [], waitMs: 5000 }),
          });
          await res.body.text();
        } catch {
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    });
    const t0 = proc(pid);
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const t1 = proc(pid);
    const nodes = (await h.apiCall('GET', '/api/v1/nodes')).json.nodes as { status: string }[];
    const ready = nodes.filter((n) => n.status === 'ready').length;
    console.log(`control plane with ${N} simulated nodes long-polling (${ready} ready):`);
    console.log(`  RSS ${t1.rssMb.toFixed(1)} MB (idle before the nodes: ${base.rssMb.toFixed(1)} MB)`);
    console.log(`  CPU ${(((t1.cpuS - t0.cpuS) / SECONDS) * 100).toFixed(1)}% of one core over ${SECONDS} s`);
    stop = true;
    await h.killUp('SIGKILL');
    await Promise.race([Promise.allSettled(loops), new Promise((r) => setTimeout(r, 2000))]);
  } finally {
    stop = true;
    await h.cleanup();
    health.close();
    await dispatcher.destroy();
  }
}

await main();
