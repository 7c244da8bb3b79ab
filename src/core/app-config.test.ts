import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { AppConfigSchema, volumeEnvName, resolveAppConfig, splitCommand, validateAppConfig } from './app-config.js';
import { PilotError } from './errors.js';

const bad = (raw: unknown, re: RegExp): void => {
  assert.throws(
    () => validateAppConfig(raw),
    (e: unknown) => e instanceof PilotError && e.code === 'invalid_config' && re.test(e.message),
  );
};

describe('pilot.yaml', () => {
  it('fills in defaults', () => {
    const c = resolveAppConfig(validateAppConfig(undefined), 'shop');
    assert.equal(c.name, 'shop');
    assert.equal(c.replicas, 1);
    assert.equal(c.run, undefined);
    assert.deepEqual(c.health, { path: '/', intervalMs: 1000, timeoutMs: 2000 });
    assert.equal(c.runtime, 'process');
    assert.equal(c.node, undefined);
    assert.equal(c.buildCache, true);
    assert.equal(c.pruneDevDependencies, true);
    const off = resolveAppConfig(validateAppConfig({ build_cache: false, prune_dev_dependencies: false }), 'shop');
    assert.deepEqual([off.buildCache, off.pruneDevDependencies], [false, false]);
    const d = resolveAppConfig(validateAppConfig({ runtime: 'docker', dockerfile: 'deploy/Dockerfile', node: '22.x' }), 'shop');
    assert.deepEqual([d.runtime, d.dockerfile, d.node], ['docker', 'deploy/Dockerfile', '22.x']);
  });

  it('parses commands and durations', () => {
    const c = resolveAppConfig(
      validateAppConfig({
        name: 'x',
        run: 'node "my server.js" --flag',
        build: ['npm run build', ['make', 'all']],
        health: { interval: '500ms', timeout: 3 },
      }),
      undefined,
    );
    assert.deepEqual(c.run, ['node', 'my server.js', '--flag']);
    assert.deepEqual(c.build, [
      ['npm', 'run', 'build'],
      ['make', 'all'],
    ]);
    assert.equal(c.health.intervalMs, 500);
    assert.equal(c.health.timeoutMs, 3000);
  });

  it('names the field and what is allowed', () => {
    bad({ replicas: 0 }, /replicas: must be integer >= 1/);
    bad({ port: 70000 }, /port: must be integer >= 1024 <= 65535/);
    bad({ port: 0 }, /port: must be integer >= 1024 <= 65535 \(got 0\)/);
    bad({ port: 22 }, /port: must be integer >= 1024 <= 65535 \(got 22\)/);
    bad({ replicas: 10_000 }, /replicas: must be integer >= 1 <= 100 \(got 10000\)/);
    bad({ name: 'Bad Name' }, /name: must be string matching/);
    bad({ health: { path: 'healthz' } }, /health\.path: must be string matching \^\//);
    bad({ replica: 2 }, /replica: unknown field \(allowed: name, runtime, node, dockerfile, build, run, port, env/);
    bad({ runtime: 'podman' }, /runtime: must be "process" or "docker"/);
    bad({ node: 'latest; rm -rf /' }, /node: must be string/);
    bad({ env: { 'BAD-KEY': 'x' } }, /env\.BAD-KEY: environment variable names must match/);
    bad({ env: { OK: 3 } }, /env\.OK: must be string/);
    bad('just a string', /expected a mapping/);
    bad({ build_cache: 'no' }, /build_cache: must be boolean/);
    bad({ prune_dev_dependencies: 0 }, /prune_dev_dependencies: must be boolean/);
  });

  it('resolves volumes with default paths and the variable that names them', () => {
    const c = resolveAppConfig(
      validateAppConfig({ name: 'x', volumes: [{ name: 'data', path: '/srv/data' }, { name: 'user-files' }] }),
      undefined,
    );
    assert.deepEqual(c.volumes, [
      { name: 'data', path: '/srv/data' },
      { name: 'user-files', path: '/data/user-files' },
    ]);
    assert.equal(volumeEnvName('user-files'), 'PILOT_VOLUME_USER_FILES');
    assert.deepEqual(resolveAppConfig(validateAppConfig({ name: 'x' }), undefined).volumes, []);
  });

  it('refuses bad volumes: names, paths over the system or the app, duplicates, overlaps, fixed port with replicas', () => {
    bad({ volumes: [{ name: 'Data' }] }, /volumes\.0\.name: must be string matching/);
    bad({ volumes: [{ name: 'd', path: 'relative' }] }, /volumes\.0\.path: must be string matching/);
    bad({ volumes: [{ name: 'd', size: 3 }] }, /volumes\.0\.size: unknown field/);
    bad({ volumes: Array.from({ length: 9 }, (_, i) => ({ name: `v${i}` })) }, /volumes: must be array/);
    const refused = (volumes: unknown[], re: RegExp, extra: Record<string, unknown> = {}): void => {
      assert.throws(
        () => resolveAppConfig(validateAppConfig({ name: 'x', volumes, ...extra }), undefined),
        (e: Error & { code?: string }) => e.code === 'invalid_config' && re.test(e.message),
      );
    };
    for (const path of ['/app', '/etc', '/usr/lib/x', '/tmp', '/proc/1', '/home']) refused([{ name: 'd', path }], /would be mounted over/);
    refused([{ name: 'd', path: '/srv/./x' }], /"\." or "\.\." segments/);
    refused([{ name: 'd', path: '/data/../etc' }], /"\." or "\.\." segments/);
    refused([{ name: 'd' }, { name: 'd', path: '/other' }], /the name d is used twice/);
    refused(
      [
        { name: 'a', path: '/srv' },
        { name: 'b', path: '/srv/b' },
      ],
      /a \(\/srv\) and b \(\/srv\/b\) overlap|b \(\/srv\/b\) and a \(\/srv\) overlap/,
    );
    refused([{ name: 'd' }], /fixed port \(8080\) allows one instance per node/, { port: 8080, replicas: 2 });
    // Allowed: a folder of the app's own under /app or /home, a fixed port with one replica.
    assert.equal(
      resolveAppConfig(
        validateAppConfig({
          name: 'x',
          port: 8080,
          volumes: [
            { name: 'a', path: '/app/uploads' },
            { name: 'b', path: '/home/node/b' },
          ],
        }),
        undefined,
      ).volumes.length,
      2,
    );
  });

  it('refuses an unterminated quote in a command', () => {
    assert.throws(() => splitCommand('node "server.js'), /unterminated/);
  });

  it('ships a JSON Schema file identical to the schema in code', () => {
    const file = JSON.parse(readFileSync(new URL('../../../schema/pilot.schema.json', import.meta.url), 'utf8')) as unknown;
    assert.deepEqual(file, JSON.parse(JSON.stringify({ $schema: 'https://json-schema.org/draft/2020-12/schema', ...AppConfigSchema })));
  });
});

describe('pilot.yaml defaults and units', () => {
  it('has the documented deploy defaults: ready 60 s, drain 1 s, stop 10 s', () => {
    const c = resolveAppConfig(validateAppConfig(undefined), 'shop');
    assert.deepEqual([c.deploy.readyTimeoutMs, c.deploy.drainMs, c.deploy.stopTimeoutMs], [60_000, 1000, 10_000]);
  });

  it('reads memory in binary units: 1GB = 1024 MB, 1.5G = 1536 MB, 512MiB = 512 MB, a number = MB', () => {
    const mb = (memory: string | number) => resolveAppConfig(validateAppConfig({ resources: { memory } }), 'x').resources.memoryMb;
    assert.equal(mb('1GB'), 1024);
    assert.equal(mb('1.5G'), 1536);
    assert.equal(mb('2GiB'), 2048);
    assert.equal(mb('512MiB'), 512);
    assert.equal(mb('256MB'), 256);
    assert.equal(mb(300), 300);
  });
});
