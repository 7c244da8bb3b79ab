import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { AppConfigSchema, resolveAppConfig, splitCommand, validateAppConfig } from './app-config.js';
import { PilotError } from './errors.js';

const bad = (raw: unknown, re: RegExp): void => {
  assert.throws(() => validateAppConfig(raw), (e: unknown) => e instanceof PilotError && e.code === 'invalid_config' && re.test(e.message));
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
    const d = resolveAppConfig(validateAppConfig({ runtime: 'docker', dockerfile: 'deploy/Dockerfile', node: '22.x' }), 'shop');
    assert.deepEqual([d.runtime, d.dockerfile, d.node], ['docker', 'deploy/Dockerfile', '22.x']);
  });

  it('parses commands and durations', () => {
    const c = resolveAppConfig(validateAppConfig({ name: 'x', run: 'node "my server.js" --flag', build: ['npm run build', ['make', 'all']], health: { interval: '500ms', timeout: 3 } }), undefined);
    assert.deepEqual(c.run, ['node', 'my server.js', '--flag']);
    assert.deepEqual(c.build, [['npm', 'run', 'build'], ['make', 'all']]);
    assert.equal(c.health.intervalMs, 500);
    assert.equal(c.health.timeoutMs, 3000);
  });

  it('names the field and what is allowed', () => {
    bad({ replicas: 0 }, /replicas: must be integer >= 1/);
    bad({ port: 70000 }, /port: must be integer >= 1 <= 65535/);
    bad({ name: 'Bad Name' }, /name: must be string matching/);
    bad({ health: { path: 'healthz' } }, /health\.path: must be string matching \^\//);
    bad({ replica: 2 }, /replica: unknown field \(allowed: name, runtime, node, dockerfile, build, run, port, env/);
    bad({ runtime: 'podman' }, /runtime: must be "process" or "docker"/);
    bad({ node: 'latest; rm -rf /' }, /node: must be string/);
    bad({ env: { 'BAD-KEY': 'x' } }, /env\.BAD-KEY: environment variable names must match/);
    bad({ env: { OK: 3 } }, /env\.OK: must be string/);
    bad('just a string', /expected a mapping/);
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
    assert.deepEqual(c.deploy, { readyTimeoutMs: 60_000, drainMs: 1000, stopTimeoutMs: 10_000 });
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
