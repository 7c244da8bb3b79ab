/**
 * Generated Dockerfiles of several app layouts, built through the real engine with the pipeline's
 * own `buildAppImage` and started with `docker run`-like settings: a pnpm lockfile (pnpm fetched by
 * npm exec at the packageManager version, its symlinked node_modules copied intact), a package.json
 * without a lockfile, an app without package.json, a build script that fails, and an app that
 * holds the folder name the build stage keeps for itself, and one whose start command needs a shell
 * (refused, with nothing left in its folder).
 */
import { strict as assert } from 'node:assert';
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { allocatePort } from '../../src/os/ports.js';
import { connectEngine } from '../../src/docker/engine.js';
import { buildAppImage } from '../../src/docker/image-build.js';
import { ensureBaseImage } from '../../src/docker/test-images.js';
import { dockerSkip } from '../../src/docker/test-support.js';
import { ROOT, tempDir, waitFor } from './harness.js';

const engine = connectEngine();
const APP = `cbuild${process.pid}`;
const tag = (name: string): string => `pilot-test/containers-build/${name}:${process.pid}`;

describe('generated Dockerfiles of several layouts, real engine', { skip: dockerSkip, timeout: 420_000 }, () => {
  const dirs: string[] = [];
  const containers: string[] = [];
  const dir = (name: string): string => {
    const d = tempDir(`cbuild-${name}`);
    dirs.push(d);
    return d;
  };
  const build = (appDir: string, name: string, run?: string[]) =>
    buildAppImage({ engine, appDir, dockerfile: undefined, run, tag: tag(name), labels: { 'dev.pilot.app': APP } });
  /** Start the image on host networking with $PORT and return what GET / answers. */
  const answer = async (image: string): Promise<any> => {
    const port = await allocatePort();
    const c = await engine.createContainer({ Image: image, Env: [`PORT=${port}`], HostConfig: { NetworkMode: 'host', Init: true } });
    containers.push(c.id);
    await c.start();
    return waitFor(
      `${image} to answer`,
      async () => {
        const r = await fetch(`http://127.0.0.1:${port}/`).catch(() => undefined);
        return r?.ok ? r.json() : undefined;
      },
      30_000,
    );
  };

  before(async () => {
    await ensureBaseImage(engine);
  });

  after(async () => {
    for (const c of containers)
      await engine
        .getContainer(c)
        .remove({ force: true })
        .catch(() => undefined);
    for (const name of ['pnpm', 'nolock', 'nopkg', 'fails', 'reserved', 'shell'])
      await engine
        .getImage(tag(name))
        .remove({ force: true })
        .catch(() => undefined);
    const stages = await engine
      .listImages({ filters: JSON.stringify({ label: ['dev.pilot.stage=build', `dev.pilot.app=${APP}`] }) })
      .catch(() => []);
    for (const i of stages)
      await engine
        .getImage(i.Id)
        .remove({ force: true })
        .catch(() => undefined);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('pnpm-lock.yaml: pnpm (the packageManager version) installs in the image; the dependency loads', async () => {
    const d = dir('pnpm');
    cpSync(join(ROOT, 'test/fixtures/docker-pnpm'), d, { recursive: true });
    const b = await build(d, 'pnpm');
    assert.match(b.generated!, /RUN \["npm","exec","--yes","--package=pnpm@9\.15\.9","--","pnpm","install","--frozen-lockfile"\]/);
    assert.deepEqual(await answer(b.id), { ms: 172800000, pm: 'pnpm' });
    assert.deepEqual(
      readdirSync(d).sort(),
      ['package.json', 'pnpm-lock.yaml', 'server.js'],
      'the staged build tools are gone from the app folder',
    );
  });

  it('package.json without a lockfile: npm install; an app without package.json: no install at all', async () => {
    const nolock = dir('nolock');
    writeFileSync(join(nolock, 'package.json'), JSON.stringify({ name: 'nolock', scripts: { start: 'node main.js' } }));
    writeFileSync(
      join(nolock, 'main.js'),
      `require('node:http').createServer((q, s) => s.end(JSON.stringify({ app: 'nolock', tmp: require('node:fs').statSync('/tmp').mode & 0o7777 }))).listen(process.env.PORT);\n`,
    );
    const a = await build(nolock, 'nolock');
    assert.match(a.generated!, /RUN \["npm","install","--no-audit","--no-fund"\]/);
    assert.deepEqual(await answer(a.id), { app: 'nolock', tmp: 0o1777 });

    const nopkg = dir('nopkg');
    mkdirSync(join(nopkg, 'lib'));
    writeFileSync(
      join(nopkg, 'lib/server.js'),
      `require('node:http').createServer((q, s) => s.end(JSON.stringify({ app: 'nopkg', home: require('node:os').homedir() }))).listen(process.env.PORT);\n`,
    );
    const b = await build(nopkg, 'nopkg', ['node', 'lib/server.js']);
    assert.ok(!/npm","(ci|install)/.test(b.generated!) && !b.generated!.includes('/pilot-deps/node_modules/'));
    assert.deepEqual(await answer(b.id), { app: 'nopkg', home: '/home/node' });
  });

  it('a failing build script fails the build with the end of its log; the folder name the build stage keeps is refused', async () => {
    const fails = dir('fails');
    writeFileSync(
      join(fails, 'package.json'),
      JSON.stringify({
        name: 'fails',
        scripts: { build: 'node -e "console.error(\'compile error: x.ts(3)\'); process.exit(3)"', start: 'node s.js' },
      }),
    );
    writeFileSync(join(fails, 's.js'), '');
    await assert.rejects(
      build(fails, 'fails'),
      (e: Error & { code?: string }) =>
        e.code === 'build_failed' && /compile error: x\.ts\(3\)/.test(e.message) && /last lines of the build log/.test(e.message),
    );

    const reserved = dir('reserved');
    writeFileSync(join(reserved, 'package.json'), JSON.stringify({ name: 'reserved', scripts: { start: 'node s.js' } }));
    writeFileSync(join(reserved, 's.js'), '');
    mkdirSync(join(reserved, '.pilot-build'));
    writeFileSync(join(reserved, '.pilot-build/mine.txt'), "the author's own file");
    await assert.rejects(
      build(reserved, 'reserved'),
      (e: Error & { code?: string; hint?: string }) =>
        e.code === 'invalid_config' && /\.pilot-build/.test(e.message) && /Rename/.test(e.hint ?? ''),
    );
    assert.deepEqual(readdirSync(join(reserved, '.pilot-build')), ['mine.txt'], "the author's folder is left alone");

    // Refused after the build tools were staged (a start command that needs a shell): nothing left behind.
    const shell = dir('shell');
    writeFileSync(join(shell, 'package.json'), JSON.stringify({ name: 'shell', scripts: { start: 'node s.js && echo done' } }));
    await assert.rejects(
      build(shell, 'shell'),
      (e: Error & { code?: string }) => e.code === 'invalid_config' && /no shell/.test(e.message),
    );
    assert.deepEqual(readdirSync(shell), ['package.json']);
  });
});
