/**
 * Container benchmark for a small Node app (runtime: docker, generated Dockerfile): image build,
 * publish (push to a real docker-registry on loopback), pull by digest and start-to-ready, through
 * Pilot's own code (the pipeline's buildAppImage and pushImage; the agent's ImageFetcher and
 * DockerRuntime) side by side with the same steps by hand with the `docker` CLI (`docker run --init
 * --network host`, as the runtime does), in the same run, alternating. Every round changes one line of the app, as a new commit would: the ratio
 * Pilot/CLI is the overhead (goal ≤ 1.10). Also the bytes a deploy moves when only the app's code
 * changed: registry storage growth per push, against the image size (and the archive path, which
 * moves the whole image each time).
 *
 *   npm run build && node dist/bench/docker.js [rounds=3]
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { allocatePort } from '../src/os/ports.js';
import { DockerRuntime } from '../src/agent/runtimes/docker-runtime.js';
import { ArtifactClient } from '../src/artifacts/client.js';
import { ImageFetcher } from '../src/docker/images.js';
import { removeNodeContainers } from '../src/docker/test-images.js';
import { baseImageTag, bootstrapNodeImage } from '../src/docker/base-image.js';
import { connectEngine, requireEngine } from '../src/docker/engine.js';
import { buildAppImage } from '../src/docker/image-build.js';
import { buildNpmSettings } from '../src/docker/build-npm.js';
import { pushImage, saveImage } from '../src/docker/publish.js';
import { startRegistry } from '../src/docker/test-registry.js';

const ROUNDS = Number(process.argv[2] ?? 3);
const engine = connectEngine();
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mb = (b: number): string => `${(b / 1024 / 1024).toFixed(2)} MB`;

function docker(args: string[]): string {
  const r = spawnSync('docker', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function timed<T>(fn: () => Promise<T> | T): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, performance.now() - t0];
}

async function ready(port: number): Promise<void> {
  const end = performance.now() + 20_000;
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(500) });
      await r.arrayBuffer();
      if (r.status === 200) return;
    } catch {
      // not yet
    }
    if (performance.now() > end) throw new Error(`nothing answers on ${port}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

await requireEngine(engine);
const base = baseImageTag(process.versions.node);
if (
  !(await engine
    .getImage(base)
    .inspect()
    .then(
      () => true,
      () => false,
    ))
)
  await bootstrapNodeImage(engine);
const registry = await startRegistry();
const app = mkdtempSync(join(tmpdir(), 'pilot-bench-docker-'));
const leftovers = new Set<string>();
const containers = new Set<string>();
const collect = (line: string): void => {
  const m = / ---> ([0-9a-f]{12})$/.exec(line) ?? /^Successfully built ([0-9a-f]{12})$/.exec(line.trim());
  if (m) leftovers.add(m[1]!);
};
// The express fixture (a lockfile, a build script): the image installs express itself (npm ci in its
// build stage); the dependency layer is reused while the lockfile does not change.
cpSync(join(fileURLToPath(new URL('../../', import.meta.url)), 'test/fixtures/docker-express'), app, { recursive: true });
const server = readFileSync(join(app, 'src/server.js'), 'utf8');
const setVersion = (v: string): void => writeFileSync(join(app, 'src/server.js'), `${server}// ${v}\n`);
/** The build stage's tools for the CLI side, as buildAppImage stages them (it removes its own after the build). */
const npm = await buildNpmSettings();
const stageTools = (): void => {
  mkdirSync(join(app, '.pilot-build'));
  cpSync('/bin/sh', join(app, '.pilot-build/sh'), { dereference: true });
  cpSync('/usr/bin/env', join(app, '.pilot-build/env'), { dereference: true });
  if (npm.ca) writeFileSync(join(app, '.pilot-build/ca.crt'), npm.ca);
};
const dockerfileDir = mkdtempSync(join(tmpdir(), 'pilot-bench-df-'));
const NODE = `bench${process.pid}`;
const runtime = new DockerRuntime({ engine, node: NODE });
// Pulls only here: the artifact client is never called.
const fetcher = new ImageFetcher(engine, dockerfileDir, () => new ArtifactClient('http://127.0.0.1:9', 'unused'));

type Side = { build: number[]; push: number[]; pull: number[]; start: number[]; growth: number[] };
const pilot: Side = { build: [], push: [], pull: [], start: [], growth: [] };
const cli: Side = { build: [], push: [], pull: [], start: [], growth: [] };
let imageSize = 0;
let archive = { size: 0, ms: 0 };

try {
  for (let round = 0; round <= ROUNDS; round++) {
    const count = round > 0; // round 0 warms up: base and dependency layers reach the registry once per repository
    // Pilot: what the package and publish steps call, then pull and start through the Engine API.
    setVersion(`pilot-${round}`);
    const [built, tb] = await timed(() =>
      buildAppImage({
        engine,
        appDir: app,
        dockerfile: undefined,
        run: undefined,
        tag: `pilot-bench/app:p${round}`,
        labels: {},
        onLine: collect,
      }),
    );
    leftovers.add(built.id);
    imageSize = built.size;
    writeFileSync(join(dockerfileDir, 'Dockerfile'), built.generated!);
    let s0 = registry.storageBytes();
    const [pushed, tp] = await timed(() => pushImage(engine, built.id, registry, 'bench-pilot', `p${round}`));
    const pg = registry.storageBytes() - s0;
    if (round === ROUNDS)
      archive = await (async () => {
        const f = join(dockerfileDir, 'image.tar');
        const [a, t] = await timed(() => saveImage(engine, built.id, f));
        rmSync(f);
        return { size: a.size, ms: t };
      })();
    await engine.getImage(built.id).remove({ force: true, noprune: true });
    const [, tpl] = await timed(() => fetcher.ensure({ id: built.id, ref: pushed.ref }));
    const port = await allocatePort();
    const [, ts] = await timed(async () => {
      await runtime.start({
        instanceId: `p${round}`,
        stateDir: join(dockerfileDir, `p${round}`),
        cwd: '/',
        argv: [],
        env: { PORT: String(port) },
        image: built.id,
      });
      await ready(port);
    });
    if (count) {
      pilot.build.push(tb);
      pilot.push.push(tp);
      pilot.pull.push(tpl);
      pilot.start.push(ts);
      pilot.growth.push(pg);
    }

    // By hand, the same Dockerfile and context with the docker CLI.
    setVersion(`cli-${round}`);
    const tag = `${registry.address}/bench-cli:c${round}`;
    stageTools();
    const [out, cb] = await timed(() => docker(['build', '--network', 'host', '-f', join(dockerfileDir, 'Dockerfile'), '-t', tag, app]));
    rmSync(join(app, '.pilot-build'), { recursive: true, force: true });
    for (const l of out.split('\n')) collect(l);
    const cid = docker(['image', 'inspect', '-f', '{{.Id}}', tag]).trim();
    leftovers.add(cid);
    s0 = registry.storageBytes();
    const [, cp] = await timed(() => docker(['push', '-q', tag]));
    const cg = registry.storageBytes() - s0;
    const ref = docker(['image', 'inspect', '-f', '{{index .RepoDigests 0}}', tag]).trim();
    docker(['rmi', '-f', '--no-prune', cid]);
    const [, cpl] = await timed(() => docker(['pull', '-q', ref]));
    const cport = await allocatePort();
    const [, cs] = await timed(async () => {
      containers.add(docker(['run', '-d', '--init', '--network', 'host', '-e', `PORT=${cport}`, ref]).trim());
      await ready(cport);
    });
    if (count) {
      cli.build.push(cb);
      cli.push.push(cp);
      cli.pull.push(cpl);
      cli.start.push(cs);
      cli.growth.push(cg);
    }
    for (const c of containers)
      await engine
        .getContainer(c)
        .remove({ force: true })
        .catch(() => undefined);
    containers.clear();
    await removeNodeContainers(engine, NODE);
  }

  const row = (name: string, p: number[], c: number[]): string => {
    const a = median(p);
    const b = median(c);
    return `${name.padEnd(22)} ${`${a.toFixed(0)} ms`.padStart(9)} ${`${b.toFixed(0)} ms`.padStart(9)} ${(a / b).toFixed(2).padStart(7)}`;
  };
  const sum = (s: Side): number[] => s.build.map((_, i) => s.build[i]! + s.push[i]! + s.pull[i]! + s.start[i]!);
  console.log(
    `docker bench: ${ROUNDS} rounds (median), one-line change per round, registry ${registry.url}, engine ${docker(['version', '-f', '{{.Server.Version}}']).trim()}`,
  );
  console.log(`${'step'.padEnd(22)} ${'pilot'.padStart(9)} ${'docker CLI'.padStart(9)} ${'ratio'.padStart(7)}`);
  console.log(row('build', pilot.build, cli.build));
  console.log(row('publish (push)', pilot.push, cli.push));
  console.log(row('pull by digest', pilot.pull, cli.pull));
  console.log(row('start to ready', pilot.start, cli.start));
  console.log(row('total', sum(pilot), sum(cli)));
  const kb = (b: number): string => `${(b / 1024).toFixed(1)} KB`;
  console.log(
    `bytes moved for a one-line change: registry grew ${kb(median(pilot.growth))} per push through Pilot (${pilot.growth.map(kb).join(', ')}), ${kb(median(cli.growth))} by hand; image size ${mb(imageSize)}: ${((100 * median(pilot.growth)) / imageSize).toFixed(3)} % of it sent`,
  );
  console.log(
    `archive path (no registry): docker save moves the whole image every deploy: ${mb(archive.size)} in ${archive.ms.toFixed(0)} ms (before the upload)`,
  );
} finally {
  await runtime.close();
  await removeNodeContainers(engine, NODE).catch(() => undefined);
  for (const c of containers)
    await engine
      .getContainer(c)
      .remove({ force: true })
      .catch(() => undefined);
  for (const i of await engine.listImages({ filters: JSON.stringify({ reference: ['pilot-bench/*', `${registry.address}/*`] }) }))
    leftovers.add(i.Id);
  for (const id of leftovers)
    await engine
      .getImage(id)
      .remove({ force: true })
      .catch(() => undefined);
  await registry.stop();
  rmSync(app, { recursive: true, force: true });
  rmSync(dockerfileDir, { recursive: true, force: true });
}
