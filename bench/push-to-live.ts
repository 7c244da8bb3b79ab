/**
 * Push → live: the time from a GitHub push delivery to the router serving the new commit, for
 * examples/hello with a warm npm cache, through a running `pilot up` (signature check, durable
 * queue, quiet period, shallow fetch from a local bare repository, build, publish, rollout).
 * Peer: `pilot run` of the same commit by hand (the same process without the webhook and queue).
 *
 *   npm run build && node dist/bench/push-to-live.js [pushes=3] [quietMs=2000]
 */
import { createHmac, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { git, Harness, makeRepo, ROOT, tempDir, waitFor } from '../test/integration/harness.js';

const PUSHES = Number(process.argv[2] ?? 3);
const QUIET = process.argv[3] ?? '2000';
const SECRET = 'bench-secret-0123456789abcdef';
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const h = new Harness();
  try {
    const origin = h.track(tempDir('origin'));
    await git(origin, 'init', '-q', '--bare');
    const work = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    await git(work, 'remote', 'add', 'origin', origin);
    await git(work, 'push', '-q', 'origin', 'HEAD:main');
    await h.startUp({ PILOT_CD_QUIET_MS: QUIET });
    const c = await h.cli(['apps', 'create', 'hello', '--repo', origin, '--secret', SECRET]);
    if (c.code !== 0) throw new Error(c.stderr);
    // Warm-up: npm's cache, the clone cache, the node's release cache.
    const warm = await h.cli(['run', work]);
    if (warm.code !== 0) throw new Error(warm.stderr);

    const times: number[] = [];
    for (let i = 0; i < PUSHES; i++) {
      writeFileSync(join(work, 'bench.txt'), `${i} ${Date.now()}\n`);
      await git(work, 'add', '-A');
      await git(work, 'commit', '-qm', `bench ${i}`);
      await git(work, 'push', '-q', 'origin', 'HEAD:main');
      const sha = await git(work, 'rev-parse', 'HEAD');
      const body = JSON.stringify({
        ref: 'refs/heads/main',
        after: sha,
        before: '0'.repeat(40),
        deleted: false,
        repository: { clone_url: origin, full_name: 'bench/hello' },
        head_commit: { id: sha, message: `bench ${i}`, author: { name: 'b' } },
      });
      const t0 = performance.now();
      const res = await request(`${h.api}/hooks/github/hello`, {
        method: 'POST',
        body,
        headers: {
          'content-type': 'application/json',
          'x-github-event': 'push',
          'x-github-delivery': randomUUID(),
          'x-hub-signature-256': 'sha256=' + createHmac('sha256', SECRET).update(body).digest('hex'),
        },
      });
      await res.body.text();
      if (res.statusCode !== 202) throw new Error(`delivery answered ${res.statusCode}`);
      await waitFor(
        'the new commit to serve',
        async () => {
          const r = await h.viaRouter('hello.localhost');
          return r.status === 200 && r.text.includes(sha) ? true : undefined;
        },
        120_000,
      );
      times.push(performance.now() - t0);
    }
    console.log(`push → new revision serving (examples/hello, warm npm cache, quiet period ${QUIET} ms), ${PUSHES} pushes:`);
    console.log(
      `  median ${(median(times) / 1000).toFixed(2)} s, all: ${times.map((t) => (t / 1000).toFixed(2)).join(', ')} s (goal <= 10 s)`,
    );
    console.log(`  without the quiet period: ~${((median(times) - Number(QUIET)) / 1000).toFixed(2)} s`);
  } finally {
    await h.cleanup();
  }
}

await main();
