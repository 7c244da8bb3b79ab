/**
 * Secrets and the CLI: values with control bytes are refused and never echoed (CLI output,
 * pilot.log, error answers); every secret can come from a file, stdin or the environment, and a
 * secret on argv still works but warns that `ps` shows it; API validation errors name the CLI's
 * flag; `pilot runs nosuch` is an unknown app.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Harness, PILOT, ROOT, tempDir, waitFor, type CliResult } from './harness.js';

const h = new Harness();
let dir = '';

/** Run the CLI with `input` on stdin. */
function cli(args: string[], input = '', env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [PILOT, ...args], { cwd: ROOT, env: { ...h.env(), ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(input);
  });
}

const SECRET = 'hunter2-very-secret-value';
const PS_WARNING = /warning: .* on the command line is visible to every user of this machine \(ps\)/;

describe('secrets from files, stdin and the environment; refused control bytes', { timeout: 180_000 }, () => {
  before(async () => {
    dir = h.track(tempDir('secret-input'));
    await h.startUp({}, 'server');
    const r = await cli(['apps', 'create', 'vault', '--repo', 'https://github.com/example/vault.git']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Secret {8}\S{16,} {3}\(generated; shown now only\)/);
  });
  after(() => h.cleanup());

  it('refuses secret values with NUL, escape or DEL bytes (stdin, --from-file), without echoing them anywhere', async () => {
    const bad = [`${SECRET}\u0000tail`, `\u001b]0;${SECRET}\u0007`, `${SECRET}\u007f`];
    for (const [i, value] of bad.entries()) {
      const viaStdin = await cli(['secrets', 'set', 'vault', `BAD_${i}`], value);
      const file = join(dir, `bad-${i}`);
      writeFileSync(file, value);
      const viaFile = await cli(['secrets', 'set', 'vault', `BAD_${i}`, '--from-file', file]);
      for (const r of [viaStdin, viaFile]) {
        assert.equal(r.code, 1, r.stdout + r.stderr);
        assert.match(
          r.stderr,
          new RegExp(
            `error: secret BAD_${i} contains (a NUL byte|the control character U\\+001B|a DEL character) at position \\d+: refused`,
          ),
        );
        assert.ok(!(r.stdout + r.stderr).includes(SECRET), `the value is echoed: ${r.stderr}`);
      }
      // The JSON error answer does not carry it either.
      const api = await h.apiCall('PUT', `/api/v1/apps/vault/secrets/BAD_${i}`, { value });
      assert.equal(api.status, 400);
      assert.ok(!JSON.stringify(api.json).includes(SECRET));
    }
    assert.deepEqual((await h.apiCall('GET', '/api/v1/apps/vault/secrets')).json.secrets, []);
    const log = readFileSync(join(h.home, 'logs', 'pilot.log'), 'utf8');
    assert.ok(!log.includes(SECRET), 'pilot.log holds the secret value');
  });

  it('takes a PEM key with its line breaks from a file, a value from stdin, and warns about one on argv', async () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n\tindented\r\n-----END PRIVATE KEY-----\n';
    const file = join(dir, 'key.pem');
    writeFileSync(file, pem);
    const fromFile = await cli(['secrets', 'set', 'vault', 'TLS_KEY', '--from-file', file]);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.doesNotMatch(fromFile.stderr, PS_WARNING);
    const fromStdin = await cli(['secrets', 'set', 'vault', 'DB_PASSWORD'], `${SECRET}\n`);
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    assert.doesNotMatch(fromStdin.stderr, PS_WARNING);
    const onArgv = await cli(['secrets', 'set', 'vault', 'API_KEY', SECRET]);
    assert.equal(onArgv.code, 0, onArgv.stderr);
    assert.match(onArgv.stderr, PS_WARNING);
    assert.ok(!(onArgv.stdout + onArgv.stderr).includes(SECRET));
    const names = (await h.apiCall('GET', '/api/v1/apps/vault/secrets')).json.secrets.map((s: { name: string }) => s.name).sort();
    assert.deepEqual(names, ['API_KEY', 'DB_PASSWORD', 'TLS_KEY']);
  });

  it('webhook secret and GitHub token from files or the environment; a short secret names --secret and the 16-character minimum', async () => {
    const short = await cli(['apps', 'create', 'hooked', '--repo', 'https://github.com/example/h.git', '--secret', 'tooshort']);
    assert.equal(short.code, 1, short.stdout + short.stderr);
    assert.match(short.stderr, /error: --secret must NOT have fewer than 16 characters/);
    assert.match(short.stderr, /hint: A webhook secret is 16 to 256 characters/);
    assert.doesNotMatch(short.stderr, /body\/secret/);
    assert.match(short.stderr, PS_WARNING);

    const secretFile = join(dir, 'webhook-secret');
    writeFileSync(secretFile, `${SECRET}\n`);
    const tokenFile = join(dir, 'gh-token');
    writeFileSync(tokenFile, 'ghp_filetoken1234567890\n');
    const files = await cli([
      'apps',
      'create',
      'hooked',
      '--repo',
      'https://github.com/example/h.git',
      '--secret-file',
      secretFile,
      '--github-token-file',
      tokenFile,
    ]);
    assert.equal(files.code, 0, files.stdout + files.stderr);
    assert.match(files.stdout, /commit statuses on/);
    assert.match(files.stdout, /Secret {8}\(the one you gave\)/);
    assert.ok(!files.stdout.includes(SECRET), 'the given secret is echoed');
    assert.doesNotMatch(files.stderr, PS_WARNING);

    const shortFile = join(dir, 'short');
    writeFileSync(shortFile, 'short\n');
    const viaFile = await cli(['apps', 'create', 'hooked', '--repo', 'https://github.com/example/h.git', '--secret-file', shortFile]);
    assert.match(viaFile.stderr, /error: --secret-file must NOT have fewer than 16 characters/);

    const viaEnv = await cli(
      ['apps', 'create', 'hooked2', '--repo', 'https://github.com/example/h.git', '--secret-file', '-'],
      `${SECRET}\n`,
      { PILOT_GITHUB_TOKEN: 'ghp_envtoken1234567890' },
    );
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.match(viaEnv.stdout, /commit statuses on/);
    const nul = await cli(
      ['apps', 'create', 'hooked3', '--repo', 'https://github.com/example/h.git', '--secret-file', '-'],
      `${SECRET}\u0000xyz`,
    );
    assert.equal(nul.code, 1);
    assert.match(nul.stderr, /the webhook secret contains a NUL byte/);
    assert.ok(!nul.stderr.includes(SECRET));
  });

  it('the admin token from --token-file or PILOT_TOKEN; --token still works, with the ps warning', async () => {
    const tokenFile = join(dir, 'admin');
    writeFileSync(tokenFile, `${h.token}\n`);
    const env = { PILOT_HOME: tempDir('no-home') }; // no admin-token file to fall back on
    h.track(env.PILOT_HOME);
    const server = ['--server', h.api];
    const none = await cli([...server, 'apps'], '', env);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no admin token: set PILOT_TOKEN, pass --token-file FILE/);
    const file = await cli([...server, '--token-file', tokenFile, 'apps'], '', env);
    assert.equal(file.code, 0, file.stderr);
    assert.doesNotMatch(file.stderr, PS_WARNING);
    const stdin = await cli([...server, '--token-file', '-', 'apps'], `${h.token}\n`, env);
    assert.equal(stdin.code, 0, stdin.stderr);
    const fromEnv = await cli([...server, 'apps'], '', { ...env, PILOT_TOKEN: h.token });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    const argv = await cli([...server, '--token', h.token, 'apps'], '', env);
    assert.equal(argv.code, 0, argv.stderr);
    assert.match(argv.stderr, /warning: --token on the command line is visible .*; use --token-file FILE or \$PILOT_TOKEN instead/);
    const missing = await cli([...server, '--token-file', join(dir, 'nope'), 'apps'], '', env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /--token-file .*nope: cannot read it \(ENOENT\)/);
  });

  it('an agent joins with PILOT_JOIN_TOKEN or --token-file (no token on its command line)', async () => {
    const joinToken = readFileSync(join(h.home, 'join-token'), 'utf8').trim();
    const file = join(dir, 'join');
    writeFileSync(file, `${joinToken}\n`);
    for (const [name, extra, env] of [
      ['viaenv', [], { PILOT_JOIN_TOKEN: joinToken }],
      ['viafile', ['--token-file', file], {}],
    ] as const) {
      const home = h.track(tempDir(`agent-${name}`));
      const p = spawn(process.execPath, [PILOT, 'agent', '--server', h.api, '--name', name, '--address', '127.0.0.1', ...extra], {
        cwd: ROOT,
        env: { ...h.env(env), PILOT_HOME: home },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (out += d.toString()));
      try {
        await waitFor(`agent ${name} to join`, () => {
          if (p.exitCode !== null) throw new Error(`agent exited ${p.exitCode}: ${out}`);
          return out.includes('joined') || undefined;
        });
        assert.doesNotMatch(out, PS_WARNING);
      } finally {
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGTERM');
        await exited;
      }
    }
  });

  it('`pilot runs nosuch` is an unknown app (exit 1); an app without runs says so (exit 0)', async () => {
    const r = await cli(['runs', 'nosuch']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /error: app "nosuch" not found/);
    const none = await cli(['runs', 'vault']);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /no runs yet/);
  });
});
