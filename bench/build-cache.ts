/**
 * Build cache benchmark: a mid-size app (express from the npm registry, typescript as a
 * devDependency, a native module compiled by node-gyp from a local file: package) deployed with
 * `pilot run` on a fresh `pilot up`:
 *
 *   1. first deploy        empty build cache and download cache: registry downloads + node-gyp
 *   2. one-line change     unchanged lockfile: node_modules restored, install skipped (goal: ≤ 20 % of 1.)
 *   3. lockfile changed    cache miss, npm ci with the app's download cache, the registry unreachable (proxy to a closed port)
 *   4. prune off           pilot.yaml prune_dev_dependencies: false: the artifact with devDependencies
 *
 *   npm run build && node dist/bench/build-cache.js
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeNativeApp, SERVER_JS } from '../src/pipeline/build-cache-app.fixture.js';
import { git, Harness, makeRepo, tempDir } from '../test/integration/harness.js';

const s = (x: number): string => `${(x / 1000).toFixed(1)} s`;

interface Deploy { wall: number; build: number; steps: Record<string, number>; out: string }

async function main(): Promise<void> {
  const h = new Harness();
  try {
    await h.startUp();
    const dir = h.track(tempDir('bench-cache'));
    // A pinned node moves npm's global config (DESIGN.md, known traps): pass this machine's CA file on
    // through the app's env, as a user behind a TLS-intercepting proxy would.
    const cafile = spawnSync('npm', ['config', 'get', 'cafile'], { encoding: 'utf8' }).stdout.trim();
    const pilotYaml = cafile && cafile !== 'null' ? `env: { npm_config_cafile: ${JSON.stringify(cafile)} }\n` : undefined;
    await writeNativeApp(dir, 'benchcache', { registryDeps: { express: '4.21.2' }, registryDevDeps: { typescript: '5.9.3' }, ...(pilotYaml ? { pilotYaml } : {}) });
    const repo = h.track(await makeRepo(dir));

    const deploy = async (label: string, args: string[] = []): Promise<Deploy> => {
      const t0 = performance.now();
      const r = await h.cli(['run', repo, '--json', ...args]);
      const wall = performance.now() - t0;
      if (r.code !== 0) throw new Error(`${label}: pilot run failed:\n${r.stderr}`);
      const steps = (JSON.parse(r.stdout) as { durations: Record<string, number> }).durations;
      return { wall, build: steps['build']!, steps, out: r.stderr };
    };
    const commit = async (msg: string): Promise<void> => {
      await git(repo, 'add', '-A');
      await git(repo, 'commit', '-qm', msg);
    };
    const grab = (out: string, re: RegExp): string => re.exec(out)?.[1] ?? '?';
    const artifact = (out: string): string => grab(out, /artifact: ([^(]+) \(/);

    const first = await deploy('first deploy');
    writeFileSync(join(repo, 'server.js'), SERVER_JS('v2'));
    await commit('one-line change');
    const second = await deploy('one-line change');
    if (!/build cache: hit/.test(second.out)) throw new Error(`expected a cache hit:\n${second.out}`);
    const lockText = readFileSync(join(repo, 'package-lock.json'), 'utf8');
    const lock = JSON.parse(lockText) as unknown;
    writeFileSync(join(repo, 'package-lock.json'), JSON.stringify(lock, null, 4) + '\n');
    // No way out for npm this time (a proxy on a closed port, no retries): the download cache must serve every tarball.
    const offline = 'npm_config_https_proxy: "http://127.0.0.1:9", npm_config_proxy: "http://127.0.0.1:9", npm_config_fetch_retries: "0"';
    writeFileSync(join(repo, 'pilot.yaml'), `env: { ${cafile && cafile !== 'null' ? `npm_config_cafile: ${JSON.stringify(cafile)}, ` : ''}${offline} }\n`);
    await commit('lockfile changed, registry unreachable');
    const third = await deploy('lockfile changed');
    // The lockfile and env of 2. again: a hit.
    writeFileSync(join(repo, 'package-lock.json'), lockText);
    writeFileSync(join(repo, 'pilot.yaml'), `${pilotYaml ?? ''}prune_dev_dependencies: false\n`);
    await commit('prune off');
    const fourth = await deploy('prune off');
    if (!/build cache: hit/.test(fourth.out)) throw new Error(`expected a cache hit:\n${fourth.out}`);

    const rows: [string, Deploy][] = [['1. first deploy (cold caches)', first], ['2. one-line change (cache hit)', second], ['3. lockfile changed, registry unreachable', third], ['4. prune off (cache hit)', fourth]];
    console.log('pilot run of express + typescript (dev) + a node-gyp native module:');
    for (const [label, d] of rows) {
      const other = Object.entries(d.steps).filter(([k]) => k !== 'build').map(([k, v]) => `${k} ${s(v)}`).join(', ');
      console.log(`  ${label.padEnd(44)} build ${s(d.build).padStart(7)}   whole run ${s(d.wall).padStart(7)}   (${other})`);
    }
    console.log(`unchanged lockfile / first deploy: build ${(100 * second.build / first.build).toFixed(0)} %, whole run ${(100 * second.wall / first.wall).toFixed(0)} % (goal <= 20 %)`);
    console.log(`  first: ${grab(first.out, /(build cache: miss[^\n]*)/)}`);
    console.log(`  first: ${grab(first.out, /(build cache: saved[^\n]*)/)}`);
    console.log(`  second: ${grab(second.out, /(build cache: hit[^\n]*)/)}`);
    console.log(`  third: ${grab(third.out, /(build cache: miss[^\n]*)/)}`);
    console.log(`  first: ${grab(first.out, /(devDependencies pruned[^\n]*)/)}`);
    for (const [label, d] of rows) console.log(`  ${label.slice(3)}: ${[...d.out.matchAll(/^ {4}(\S+ took \S+)$/gm)].map((m) => m[1]).join(', ')}`);
    console.log(`artifact with devDependencies pruned: ${artifact(second.out)}; without pruning: ${artifact(fourth.out)}`);
  } finally {
    await h.cleanup();
  }
}

await main();
