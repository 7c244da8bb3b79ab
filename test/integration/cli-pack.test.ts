/**
 * The package as users install it: `npm pack` (with the shrinkwrap prepack writes), then `npm
 * install -g` of the tarball into a temporary prefix, offline from npm's cache, and the installed
 * `pilot` runs: --help, init, completion, and `pilot up` serving its API.
 *
 * Offline: the shrinkwrap pins every production dependency with its registry URL, so npm takes the
 * tarballs from its cache (~/.npm, filled by this repository's own `npm install`). Install scripts
 * are skipped (--ignore-scripts: better-sqlite3 would compile SQLite for minutes); its compiled
 * binding is copied from this repository's node_modules instead, the same file a build makes.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isSameProcess } from '../../src/os/proc.js';
import { ROOT, tempDir, waitFor } from './harness.js';

const work = tempDir('pack');
const prefix = join(work, 'prefix');
const bin = join(prefix, 'bin', 'pilot');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
let files: string[] = [];

function npm(args: string[], cwd = work): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('npm', args, {
    cwd,
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
function pilot(args: string[], env: Record<string, string> = {}, cwd = work): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, {
    cwd,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, PILOT_HOME: join(work, 'home'), ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(() => {
  // What `npm pack` runs as prepack / postpack, around a pack of the compiled tree `npm test` built.
  const sw = spawnSync(process.execPath, [join(ROOT, 'scripts/shrinkwrap.js')], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(sw.status, 0, sw.stderr);
  try {
    const pack = npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT);
    assert.equal(pack.status, 0, pack.stderr);
    files = (JSON.parse(pack.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
  } finally {
    spawnSync(process.execPath, [join(ROOT, 'scripts/shrinkwrap.js'), '--remove'], { cwd: ROOT });
  }
  const tgz = join(work, `${pkg.name}-${pkg.version}.tgz`);
  assert.ok(existsSync(tgz), tgz);
  const common = ['install', '-g', tgz, '--prefix', prefix, '--ignore-scripts', '--no-audit', '--no-fund'];
  let install = npm([...common, '--offline']);
  if (install.status !== 0 && /ENOTCACHED/.test(install.stderr)) {
    // A cache that lacks a tarball (a fresh CI cache): the registry fills the gap, the cache the rest.
    process.stderr.write(`# npm cache incomplete, installing with --prefer-offline: ${install.stderr.split('\n')[1] ?? ''}\n`);
    install = npm([...common, '--prefer-offline']);
  }
  assert.equal(install.status, 0, install.stderr);
  const binding = 'better-sqlite3/build/Release/better_sqlite3.node';
  const target = join(prefix, 'lib/node_modules', pkg.name, 'node_modules', binding);
  mkdirSync(join(target, '..'), { recursive: true });
  copyFileSync(join(ROOT, 'node_modules', binding), target);
});
after(() => rmSync(work, { recursive: true, force: true }));

describe('the npm package', () => {
  it('is named as on the registry, with the binary pilot', () => {
    assert.notEqual(pkg.name, 'pilot', '`pilot` on npm is an unrelated library');
    assert.ok(existsSync(bin));
  });

  it('holds what runs and nothing else: no tests, no sources, no benchmarks', () => {
    for (const f of [
      'bin/pilot.js',
      'dist/src/cli/main.js',
      'dist/src/control/server.js',
      'schema/pilot.schema.json',
      'package.json',
      'README.md',
      'npm-shrinkwrap.json',
    ]) {
      assert.ok(files.includes(f), `${f} is packed`);
    }
    const unwanted = files.filter((f) =>
      /\.test\.js$|\.fixture\.js$|(^|\/)test-[^/]*\.js$|\.ts$|\.map$|^dist\/(test|bench)\/|^(src|test|bench|examples|scripts)\//.test(f),
    );
    assert.deepEqual(unwanted, []);
    // The shrinkwrap pins production dependencies only.
    const sw = JSON.parse(readFileSync(join(prefix, 'lib/node_modules', pkg.name, 'npm-shrinkwrap.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; resolved?: string }>;
    };
    const entries = Object.entries(sw.packages).filter(([k]) => k !== '');
    assert.ok(entries.length > 0);
    assert.ok(entries.every(([, v]) => v.dev !== true && v.resolved?.startsWith('https://')));
    assert.ok(!('node_modules/typescript' in sw.packages), 'no dev dependency');
  });

  it('runs from the prefix: --help, --version, completion, init', () => {
    const help = pilot(['--help']);
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^Usage: pilot /);
    assert.match(help.stdout, /doctor/);
    assert.equal(pilot(['--version']).stdout.trim(), pkg.version);
    assert.match(pilot(['completion', 'bash']).stdout, /complete -o default -F _pilot_complete pilot/);
    const app = join(work, 'app');
    mkdirSync(app, { recursive: true });
    spawnSync('sh', ['-c', `printf '{"name":"packed","scripts":{"start":"node s.js"}}' > package.json`], { cwd: app });
    const init = pilot(['init', '--dry-run'], {}, app);
    assert.equal(init.status, 0, init.stderr);
    assert.match(init.stdout, /^name: packed$/m);
  });

  it('runs `pilot up` from the prefix: the server answers, doctor sees it, pilot down stops it', async () => {
    const home = join(work, 'up-home');
    const up = spawn(bin, ['up', '--no-agent', '--api-port', '0', '--router-port', '0'], {
      cwd: work,
      env: { ...process.env, PILOT_HOME: home },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    up.stdout.on('data', (d: Buffer) => (out += d.toString()));
    up.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(
        'pilot up from the package',
        () => {
          if (up.exitCode !== null) throw new Error(`pilot up exited ${up.exitCode}: ${out}`);
          return out.includes('pilot is up') || undefined;
        },
        60_000,
      );
      const server = JSON.parse(readFileSync(join(home, 'server.json'), 'utf8')) as { api: string };
      assert.equal((await fetch(`${server.api}/healthz`)).status, 200);
      const doctor = pilot(['doctor', '--json'], { PILOT_HOME: home });
      const checks = (JSON.parse(doctor.stdout) as { checks: { id: string; status: string }[] }).checks;
      assert.equal(checks.find((c) => c.id === 'api')?.status, 'ok');
      assert.equal(checks.find((c) => c.id === 'token')?.status, 'ok');
      const down = pilot(['down'], { PILOT_HOME: home });
      assert.equal(down.status, 0, down.stderr);
      await waitFor('pilot up to stop', () => (up.exitCode !== null ? true : undefined), 30_000);
    } finally {
      if (up.exitCode === null) up.kill('SIGKILL');
      // The router process, if `pilot down` did not get to it.
      try {
        const r = JSON.parse(readFileSync(join(home, 'router', 'router.json'), 'utf8')) as { pid: number; startTime: string };
        if (isSameProcess(r.pid, r.startTime)) process.kill(r.pid, 'SIGKILL'); // never a reused pid
      } catch {
        // gone already
      }
    }
  });
});
