/**
 * `pilot init` on app folders of several kinds (npm, yarn, pnpm, packageManager, a Dockerfile app,
 * a monorepo root and an app inside it, no start script, fixed ports, hostile package.json files),
 * each pilot.yaml read back with the real config loader `pilot run` uses.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadAppConfig } from '../../src/workspace/load-config.js';
import { Harness, git, tempDir } from './harness.js';

const h = new Harness();
after(() => h.cleanup());

function app(files: Record<string, string>): string {
  const dir = h.track(tempDir('init-app'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

interface InitJson {
  file: string;
  written: boolean;
  replaced: boolean;
  detected: {
    name: string;
    packageManager: { name: string; source: string };
    start?: { command: string; source: string; runLine?: string };
    port: { kind: string; port?: number };
    dockerfile: boolean;
    node?: { spec: string; source: string };
    monorepo: string[];
  };
  warnings: string[];
  remote?: string;
  steps: string[];
}

/** `pilot init DIR --json`, then pilot.yaml through the real loader. */
async function init(
  dir: string,
  args: string[] = [],
): Promise<{ out: InitJson; yaml: string; config: Awaited<ReturnType<typeof loadAppConfig>> }> {
  const r = await h.cli(['init', dir, '--json', ...args]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const out = JSON.parse(r.stdout) as InitJson;
  const yaml = readFileSync(join(dir, 'pilot.yaml'), 'utf8');
  return { out, yaml, config: await loadAppConfig(dir) };
}

const server = (port: string): string => `require('http').createServer((q, s) => s.end('hi')).listen(${port});\n`;

describe('pilot init', () => {
  it('npm app reading PORT: nothing to set but the name; the steps name its GitHub repository', async () => {
    const dir = app({
      'package.json': JSON.stringify({
        name: '@acme/Shop-API',
        scripts: { start: 'node src/main.js', build: 'tsc' },
        engines: { node: '20.x' },
      }),
      'package-lock.json': '{}',
      'src/main.js': server('process.env.PORT || 3000'),
    });
    await git(dir, 'init', '-q', '-b', 'trunk');
    // A remote URL with a token in it, as CI set-ups often have: never printed.
    await git(dir, 'remote', 'add', 'origin', 'https://x-access-token:ghp_SECRET123@github.com/acme/shop-api.git');
    const { out, yaml, config } = await init(dir);
    assert.equal(config.config.name, 'shop-api');
    assert.equal(config.input.port, undefined);
    assert.equal(config.input.run, undefined, 'npm start is the default: no run: line');
    assert.deepEqual(out.detected.packageManager, { name: 'npm', source: 'package-lock.json' });
    assert.equal(out.detected.port.kind, 'reads-port');
    assert.deepEqual(out.detected.node, { spec: '20.x', source: 'package.json engines.node' });
    assert.match(yaml, /^# Port: src\/main\.js reads \$PORT/m);
    assert.match(yaml, /^# Build: the "build" script runs/m);
    const steps = out.steps.join('\n');
    assert.match(steps, /pilot apps create shop-api --repo https:\/\/github\.com\/acme\/shop-api\.git --branch trunk/);
    assert.match(steps, /https:\/\/github\.com\/acme\/shop-api\/settings\/hooks\/new/);
    assert.ok(!JSON.stringify(out).includes('SECRET123'), 'the token in the remote URL is never printed');
    assert.equal(out.remote, 'https://github.com/acme/shop-api.git');
  });

  it('yarn, pnpm and the packageManager field', async () => {
    const yarn = await init(
      app({
        'package.json': JSON.stringify({ name: 'y', scripts: { start: 'node s.js' } }),
        'yarn.lock': '# yarn lockfile v1\n',
        's.js': server('process.env["PORT"]'),
      }),
    );
    assert.deepEqual(yarn.out.detected.packageManager, { name: 'yarn', source: 'yarn.lock' });
    assert.equal(yarn.out.detected.port.kind, 'reads-port');
    const pnpm = await init(
      app({
        'package.json': JSON.stringify({ name: 'p', scripts: { start: 'node s.js' } }),
        'pnpm-lock.yaml': "lockfileVersion: '9.0'\n",
        's.js': 'const { PORT } = process.env;\n',
      }),
    );
    assert.equal(pnpm.out.detected.packageManager.name, 'pnpm');
    assert.equal(pnpm.out.detected.port.kind, 'reads-port');
    const field = await init(
      app({ 'package.json': JSON.stringify({ name: 'f', packageManager: 'pnpm@9.1.0', scripts: { start: 'node s.js' } }), 's.js': '' }),
    );
    assert.deepEqual(field.out.detected.packageManager, { name: 'pnpm', source: 'packageManager "pnpm@9.1.0"' });
    assert.match(field.yaml, /^# Package manager: pnpm, from packageManager "pnpm@9.1.0"/m);
  });

  it('a Dockerfile app runs as a container; a fixed port becomes port:', async () => {
    const { out, config } = await init(
      app({
        'package.json': JSON.stringify({ name: 'boxed', scripts: { start: 'node app.js' } }),
        Dockerfile: 'FROM pilot/node:20\n',
        'app.js': server('8081'),
      }),
    );
    assert.equal(out.detected.dockerfile, true);
    assert.equal(config.config.runtime, 'docker');
    assert.equal(config.input.port, 8081);
    assert.deepEqual(out.detected.port, { kind: 'fixed', port: 8081 });
  });

  it('a port Pilot cannot give (below 1024) is explained, not written', async () => {
    const { yaml, config } = await init(
      app({ 'package.json': JSON.stringify({ name: 'eighty', scripts: { start: 'node a.js' } }), 'a.js': server('80') }),
    );
    assert.equal(config.input.port, undefined);
    assert.match(yaml, /listens on 80, which Pilot cannot give/);
  });

  it('no start script: run: from main, from the file a dev script runs, or a plain NOT FOUND', async () => {
    const main = await init(
      app({ 'package.json': JSON.stringify({ name: 'm', main: 'lib/app.js' }), 'lib/app.js': server('process.env.PORT') }),
    );
    assert.deepEqual(main.config.input.run, 'node lib/app.js');
    const dev = await init(
      app({
        'package.json': JSON.stringify({ name: '101-app', scripts: { dev: 'nodemon -L src/index.js' } }),
        'src/index.js': server('3000'),
      }),
    );
    assert.equal(dev.config.input.run, 'node src/index.js');
    assert.equal(dev.config.input.port, 3000);
    assert.match(dev.config.config.name, /init-app/, 'an invalid package name (101-app) gives way to the folder name');
    const none = await init(app({ 'package.json': JSON.stringify({ name: 'nothing' }) }));
    assert.equal(none.out.detected.start, undefined);
    assert.match(none.yaml, /^# Start: NOT FOUND/m);
    assert.equal(none.config.input.run, undefined);
    // A Procfile web: line wins over the start script, and node ./bin/www (no extension) is found.
    const www = await init(
      app({
        'package.json': JSON.stringify({ name: 'w', scripts: { start: 'node x.js' } }),
        Procfile: 'web: node ./bin/www\n',
        'bin/www': server('process.env.PORT'),
      }),
    );
    assert.deepEqual(www.out.detected.start, { command: 'node ./bin/www', source: 'Procfile web:' });
    assert.equal(www.out.detected.port.kind, 'reads-port');
  });

  it('Node.js version from .node-version before .nvmrc before engines.node', async () => {
    const both = await init(
      app({
        'package.json': JSON.stringify({ name: 'n', engines: { node: '>=18' } }),
        '.nvmrc': 'lts/iron\n',
        '.node-version': '# pinned\n22.11.0\n',
      }),
    );
    assert.deepEqual(both.out.detected.node, { spec: '22.11.0', source: '.node-version' });
    const nvm = await init(app({ 'package.json': JSON.stringify({ name: 'n2' }), '.nvmrc': 'v20.18.1' }));
    assert.deepEqual(nvm.out.detected.node, { spec: 'v20.18.1', source: '.nvmrc' });
    assert.match(nvm.yaml, /^# node: "v20\.18\.1"$/m);
    const none = await init(app({ 'package.json': JSON.stringify({ name: 'n3' }) }));
    assert.equal(none.out.detected.node, undefined);
    assert.match(none.yaml, /^# node: "\d+\.x"$/m);
  });

  it('a monorepo root is recognised, and an app inside it is initialised in its folder', async () => {
    const root = app({
      'package.json': JSON.stringify({ name: 'mono', private: true, workspaces: ['apps/*'] }),
      'pnpm-workspace.yaml': 'packages: [apps/*]\n',
      'apps/web/package.json': JSON.stringify({ name: '@mono/web', scripts: { start: 'node server.js' } }),
      'apps/web/server.js': server('process.env.PORT'),
    });
    await git(root, 'init', '-q', '-b', 'main');
    await git(root, 'remote', 'add', 'origin', 'git@github.com:acme/mono.git');
    const top = await h.cli(['init', root]);
    assert.equal(top.code, 0, top.stderr);
    assert.match(top.stdout, /monorepo root \(package\.json "workspaces", pnpm-workspace\.yaml\)/);
    const web = await init(join(root, 'apps/web'));
    assert.equal(web.config.config.name, 'web');
    assert.match(web.out.steps.join('\n'), /--repo https:\/\/github\.com\/acme\/mono\.git --branch main/);
    assert.match(web.out.steps.join('\n'), /The app is in apps\/web of the repository/);
    assert.match(web.out.steps.join('\n'), /pilot run apps\/web/);
  });

  it('hostile package.json files: not JSON, not an object, weird types, huge; init still writes a valid pilot.yaml', async () => {
    const broken = await init(app({ 'package.json': '{ "name": "x", ', 'server.js': server('process.env.PORT') }));
    assert.match(broken.out.warnings.join('\n'), /package\.json is not valid JSON/);
    assert.equal(broken.out.detected.start?.command, 'node server.js');
    const array = await init(app({ 'package.json': '[1,2,3]' }));
    assert.match(array.out.warnings.join('\n'), /not a JSON object/);
    const weird = await init(
      app({
        'package.json': JSON.stringify({
          name: 42,
          scripts: { start: ['node', 'x.js'], build: 'make' },
          engines: 'node 20',
          packageManager: { yarn: true },
          main: null,
          workspaces: 'yes',
          __proto__: { polluted: true },
        }),
      }),
    );
    const w = weird.out.warnings.join('\n');
    assert.match(w, /"name" is not a string/);
    assert.match(w, /script "start" is not a string/);
    assert.match(w, /"engines" is not an object/);
    assert.match(w, /"packageManager" is not a string/);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    // Quotes, newlines and YAML syntax in what the folder says stay inside comments.
    const odd = await init(
      app({
        'package.json': JSON.stringify({
          name: 'odd',
          scripts: { start: 'node s.js\n"]: {x}\nrun: evil' },
          engines: { node: '20\nport: 22' },
        }),
        's.js': '',
      }),
    );
    assert.equal(odd.config.input.run, undefined);
    assert.equal(odd.config.input.port, undefined);
    assert.ok(
      Object.keys(parse(odd.yaml) as object).every((k) => k === 'name'),
      odd.yaml,
    );
    // 3 MB: not read at all.
    const huge = await init(app({ 'package.json': JSON.stringify({ name: 'huge', description: 'x'.repeat(3_000_000) }) }));
    assert.match(huge.out.warnings.join('\n'), /package\.json not read: \d+ bytes/);
  });

  it('never overwrites pilot.yaml without --force; --dry-run writes nothing', async () => {
    const dir = app({
      'package.json': JSON.stringify({ name: 'keep', scripts: { start: 'node s.js' } }),
      'pilot.yaml': 'name: mine\nreplicas: 3\n',
    });
    const refused = await h.cli(['init', dir]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /pilot\.yaml exists already/);
    assert.match(refused.stderr, /hint: Pass --force/);
    assert.equal(readFileSync(join(dir, 'pilot.yaml'), 'utf8'), 'name: mine\nreplicas: 3\n');
    const dry = await h.cli(['init', dir, '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^name: keep$/m);
    assert.equal(readFileSync(join(dir, 'pilot.yaml'), 'utf8'), 'name: mine\nreplicas: 3\n');
    const forced = await h.cli(['init', dir, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, /^replaced /m);
    assert.equal((await loadAppConfig(dir)).config.name, 'keep');
  });

  it('refuses a folder that does not exist and a --name the schema refuses', async () => {
    const missing = await h.cli(['init', join(h.home, 'no-such-app')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no such folder/);
    const dir = app({ 'package.json': '{}' });
    const badName = await h.cli(['init', dir, '--name', 'Bad Name!']);
    assert.equal(badName.code, 1);
    assert.match(badName.stderr, /name/);
    assert.ok(!existsSync(join(dir, 'pilot.yaml')), 'nothing written');
  });
});
