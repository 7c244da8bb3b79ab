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
 * Then the issue's own case, a mid-size app with a real native module: express, better-sqlite3
 * (no prebuilt binary can be downloaded here, so node-gyp compiles SQLite from source, as on any
 * machine without GitHub access) and typescript + @types as devDependencies; first deploy and a
 * one-line change. The goal (an unchanged lockfile's deploy ≤ 20 % of the first) is judged on both.
 *
 *   npm run build && node dist/bench/build-cache.js
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeNativeApp, SERVER_JS } from '../src/pipeline/build-cache-app.fixture.js';
import { git, Harness, makeRepo, tempDir } from '../test/integration/harness.js';

const s = (x: number): string => `${(x / 1000).toFixed(1)} s`;

interface Deploy {
  wall: number;
  build: number;
  steps: Record<string, number>;
  out: string;
}

async function main(): Promise<void> {
  const h = new Harness();
  try {
    await h.startUp();
    const dir = h.track(tempDir('bench-cache'));
    // A pinned node moves npm's global config (DESIGN.md, known traps): pass this machine's CA file on
    // through the app's env, as a user behind a TLS-intercepting proxy would.
    const cafile = spawnSync('npm', ['config', 'get', 'cafile'], { encoding: 'utf8' }).stdout.trim();
    const pilotYaml = cafile && cafile !== 'null' ? `env: { npm_config_cafile: ${JSON.stringify(cafile)} }\n` : undefined;
    await writeNativeApp(dir, 'benchcache', {
      registryDeps: { express: '4.21.2' },
      registryDevDeps: { typescript: '5.9.3' },
      ...(pilotYaml ? { pilotYaml } : {}),
    });
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
    writeFileSync(
      join(repo, 'pilot.yaml'),
      `env: { ${cafile && cafile !== 'null' ? `npm_config_cafile: ${JSON.stringify(cafile)}, ` : ''}${offline} }\n`,
    );
    await commit('lockfile changed, registry unreachable');
    const third = await deploy('lockfile changed');
    // The lockfile and env of 2. again: a hit.
    writeFileSync(join(repo, 'package-lock.json'), lockText);
    writeFileSync(join(repo, 'pilot.yaml'), `${pilotYaml ?? ''}prune_dev_dependencies: false\n`);
    await commit('prune off');
    const fourth = await deploy('prune off');
    if (!/build cache: hit/.test(fourth.out)) throw new Error(`expected a cache hit:\n${fourth.out}`);

    // The mid-size app with a native module compiled from source.
    const sqDir = h.track(tempDir('bench-sqlite'));
    writeFileSync(
      join(sqDir, 'package.json'),
      JSON.stringify(
        {
          name: 'benchsqlite',
          version: '1.0.0',
          private: true,
          scripts: { start: 'node server.js', build: 'node build.js' },
          dependencies: { express: '4.21.2', 'better-sqlite3': '12.4.1' },
          devDependencies: { typescript: '5.9.3', '@types/express': '5.0.3', '@types/better-sqlite3': '7.6.13' },
        },
        null,
        2,
      ),
    );
    const sqServer = (v: string): string =>
      `const express = require('express');\nconst Database = require('better-sqlite3');\nconst db = new Database(':memory:');\nconst app = express();\napp.get('/', (_req, res) => res.json({ version: ${JSON.stringify(v)}, sqlite: db.prepare('select sqlite_version() as v').get().v }));\napp.listen(Number(process.env.PORT));\n`;
    writeFileSync(join(sqDir, 'server.js'), sqServer('v1'));
    writeFileSync(
      join(sqDir, 'build.js'),
      "require('node:fs').mkdirSync('dist', { recursive: true });\nrequire('node:fs').writeFileSync('dist/built', new Date().toISOString());\n",
    );
    writeFileSync(join(sqDir, '.gitignore'), 'node_modules\ndist\n');
    if (pilotYaml) writeFileSync(join(sqDir, 'pilot.yaml'), pilotYaml);
    const lockOnly = spawnSync('npm', ['install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund'], {
      cwd: sqDir,
      encoding: 'utf8',
    });
    if (lockOnly.status !== 0) throw new Error(`npm install --package-lock-only: ${lockOnly.stderr}`);
    const sqRepo = h.track(await makeRepo(sqDir));
    const sqDeploy = async (label: string): Promise<Deploy> => {
      const t0 = performance.now();
      const r = await h.cli(['run', sqRepo, '--json']);
      const wall = performance.now() - t0;
      if (r.code !== 0) throw new Error(`${label}: pilot run failed:\n${r.stderr}`);
      const steps = (JSON.parse(r.stdout) as { durations: Record<string, number> }).durations;
      return { wall, build: steps['build']!, steps, out: r.stderr };
    };
    const sqFirst = await sqDeploy('sqlite first deploy');
    writeFileSync(join(sqRepo, 'server.js'), sqServer('v2'));
    await git(sqRepo, 'add', '-A');
    await git(sqRepo, 'commit', '-qm', 'one-line change');
    const sqSecond = await sqDeploy('sqlite one-line change');
    if (!/build cache: hit/.test(sqSecond.out)) throw new Error(`expected a cache hit:\n${sqSecond.out}`);
    const served = await h.viaRouter('benchsqlite.localhost');
    if (served.status !== 200 || !/"version":"v2","sqlite":"3\./.test(served.text))
      throw new Error(`the sqlite app does not answer as expected: ${served.status} ${served.text}`);

    const rows: [string, Deploy][] = [
      ['1. first deploy (cold caches)', first],
      ['2. one-line change (cache hit)', second],
      ['3. lockfile changed, registry unreachable', third],
      ['4. prune off (cache hit)', fourth],
    ];
    console.log('pilot run of express + typescript (dev) + a node-gyp native module:');
    for (const [label, d] of rows) {
      const other = Object.entries(d.steps)
        .filter(([k]) => k !== 'build')
        .map(([k, v]) => `${k} ${s(v)}`)
        .join(', ');
      console.log(`  ${label.padEnd(44)} build ${s(d.build).padStart(7)}   whole run ${s(d.wall).padStart(7)}   (${other})`);
    }
    console.log(
      `unchanged lockfile / first deploy: build ${((100 * second.build) / first.build).toFixed(0)} %, whole run ${((100 * second.wall) / first.wall).toFixed(0)} % (goal <= 20 %)`,
    );
    console.log('pilot run of a mid-size app: express + better-sqlite3 (compiled by node-gyp) + typescript, @types (dev):');
    for (const [label, d] of [
      ['1. first deploy (cold caches)', sqFirst],
      ['2. one-line change (cache hit)', sqSecond],
    ] as [string, Deploy][]) {
      const other = Object.entries(d.steps)
        .filter(([k]) => k !== 'build')
        .map(([k, v]) => `${k} ${s(v)}`)
        .join(', ');
      console.log(`  ${label.padEnd(44)} build ${s(d.build).padStart(7)}   whole run ${s(d.wall).padStart(7)}   (${other})`);
    }
    console.log(
      `unchanged lockfile / first deploy: build ${((100 * sqSecond.build) / sqFirst.build).toFixed(0)} %, whole run ${((100 * sqSecond.wall) / sqFirst.wall).toFixed(0)} % (goal <= 20 %); served: ${served.text}`,
    );
    console.log(`  ${grab(sqSecond.out, /(build cache: hit[^\n]*)/)}`);
    console.log(`  ${grab(sqFirst.out, /(devDependencies pruned[^\n]*)/)}; artifact ${artifact(sqSecond.out)}`);
    console.log(`  first: ${grab(first.out, /(build cache: miss[^\n]*)/)}`);
    console.log(`  first: ${grab(first.out, /(build cache: saved[^\n]*)/)}`);
    console.log(`  second: ${grab(second.out, /(build cache: hit[^\n]*)/)}`);
    console.log(`  third: ${grab(third.out, /(build cache: miss[^\n]*)/)}`);
    console.log(`  first: ${grab(first.out, /(devDependencies pruned[^\n]*)/)}`);
    for (const [label, d] of rows)
      console.log(`  ${label.slice(3)}: ${[...d.out.matchAll(/^ {4}(\S+ took \S+)$/gm)].map((m) => m[1]).join(', ')}`);
    console.log(`artifact with devDependencies pruned: ${artifact(second.out)}; without pruning: ${artifact(fourth.out)}`);
  } finally {
    await h.cleanup();
  }
}

await main();
