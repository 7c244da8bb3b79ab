/**
 * Fixed port, switch without downtime: an app that listens on 3000 whatever $PORT says
 * (pilot.yaml `port: 3000`) is deployed, then switched to new revisions while client loops call it
 * through the router. Prints failed/total requests per switch (goal: 0). As root on Linux each
 * instance gets its own network namespace; otherwise Pilot recreates (old stops first) and the
 * failures show the gap. Peer on the same machine: that recreate, with `PILOT_BENCH_RECREATE=1`
 * (the agent then runs without namespaces: `PILOT_NETNS=0`).
 *
 *   npm run build && node dist/bench/fixed-port.js [switches=3] [clients=4]
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { git, Harness, makeRepo, tempDir } from '../test/integration/harness.js';

const SWITCHES = Number(process.argv[2] ?? 3);
const CLIENTS = Number(process.argv[3] ?? 4);
const recreate = process.env.PILOT_BENCH_RECREATE === '1';

const server = (v: number): string => `
import { createServer } from 'node:http';
const server = createServer((req, res) => { res.writeHead(200); res.end('v${v}'); });
server.listen(3000);
process.on('SIGTERM', () => { server.close(() => process.exit(0)); server.closeIdleConnections(); setTimeout(() => process.exit(0), 3000).unref(); });
`;

async function main(): Promise<void> {
  const h = new Harness();
  const before = new Set(netns());
  try {
    const dir = h.track(tempDir('fixed'));
    writeFileSync(join(dir, 'pilot.yaml'), 'name: fixed\nrun: node server.js\nport: 3000\ndeploy:\n  drain: 1s\n');
    writeFileSync(join(dir, 'server.js'), server(0));
    const repo = h.track(await makeRepo(dir));
    await h.startUp(recreate ? { PILOT_NETNS: '0' } : {});
    const first = await h.cli(['run', repo]);
    if (first.code !== 0) throw new Error(first.stderr);
    const mode = /own network namespace/.test(first.stdout) ? 'own network namespace per instance' : 'recreate (no namespaces)';
    console.log(`fixed port 3000, ${CLIENTS} client loops through the router, mode: ${mode}`);
    for (let i = 1; i <= SWITCHES; i++) {
      writeFileSync(join(repo, 'server.js'), server(i));
      await git(repo, 'commit', '-qam', `v${i}`);
      let stop = false;
      let total = 0;
      let failed = 0;
      const loop = async (): Promise<void> => {
        while (!stop) {
          total++;
          try {
            const res = await request(h.router + '/', { headers: { host: 'fixed.localhost' } });
            await res.body.text();
            if (res.statusCode !== 200) failed++;
          } catch {
            failed++;
          }
        }
      };
      const loops = Array.from({ length: CLIENTS }, loop);
      const t0 = performance.now();
      const r = await h.cli(['run', repo]);
      const secs = (performance.now() - t0) / 1000;
      await new Promise((res) => setTimeout(res, 1500)); // through the drain of the old instance
      stop = true;
      await Promise.all(loops);
      if (r.code !== 0) throw new Error(r.stderr);
      console.log(`  switch ${i}: failed/total = ${failed}/${total} (pilot run ${secs.toFixed(1)} s)`);
    }
  } finally {
    await h.cleanup();
    for (const n of netns()) if (!before.has(n)) execFileSync('ip', ['netns', 'del', n]);
  }
}

function netns(): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n.startsWith('pilot-'));
  } catch {
    return [];
  }
}

await main();
