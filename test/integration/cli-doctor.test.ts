/**
 * `pilot doctor` against real conditions: a running `pilot up`, a wrong token, a stopped server,
 * binaries missing from PATH, HAProxy configured but absent. Its exit code says whether every
 * check passed; --json carries the same verdicts.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { registrySkip, startRegistry } from '../../src/docker/test-registry.js';
import { Harness, PILOT, ROOT, tempDir } from './harness.js';

interface Check {
  id: string;
  status: 'ok' | 'warn' | 'fail' | 'skip';
  summary: string;
  fix?: string;
}

const h = new Harness();
const emptyPath = h.track(tempDir('doctor-path'));

before(async () => {
  await h.startUp();
});
after(() => h.cleanup());

async function doctor(
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<{ code: number | null; checks: Map<string, Check>; ok: boolean }> {
  const r = await h.cli(['doctor', '--json', '--timeout', '10s', ...args], { env });
  let parsed: { ok: boolean; checks: Check[] };
  try {
    parsed = JSON.parse(r.stdout) as { ok: boolean; checks: Check[] };
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
  // The exit code and the JSON agree: 1 exactly when a check failed.
  assert.equal(r.code, parsed.checks.some((c) => c.status === 'fail') ? 1 : 0, r.stdout);
  assert.equal(parsed.ok, r.code === 0);
  for (const c of parsed.checks) if (c.status === 'fail' || c.status === 'warn') assert.ok(c.fix, `${c.id} says how to fix it`);
  return { code: r.code, ok: parsed.ok, checks: new Map(parsed.checks.map((c) => [c.id, c])) };
}

/** `pilot registry set URL --username ci --password-stdin` with the password on stdin. */
function setRegistry(url: string, password: string): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [PILOT, 'registry', 'set', url, '--username', 'ci', '--password-stdin'], {
    cwd: ROOT,
    env: h.env(),
    input: `${password}\n`,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stderr: r.stderr };
}

describe('pilot doctor', () => {
  it('passes the API, token, agent and clock checks of a running pilot up', async () => {
    const { checks } = await doctor();
    assert.equal(checks.get('api')?.status, 'ok', JSON.stringify(checks.get('api')));
    assert.equal(checks.get('token')?.status, 'ok');
    assert.equal(checks.get('agents')?.status, 'ok', JSON.stringify(checks.get('agents')));
    assert.match(checks.get('agents')!.summary, /1 agent\(s\) connected/);
    // The local agent's clock is this machine's: measured, and within 2 s.
    assert.equal(checks.get('clocks')?.status, 'ok', JSON.stringify(checks.get('clocks')));
    assert.match(checks.get('clocks')!.summary, /1 agent clock\(s\) and the server within 2s/);
    assert.equal(checks.get('registry')?.status, 'skip');
    assert.equal(checks.get('disk')?.status, 'ok');
    assert.match(checks.get('disk')!.summary, /GiB free under/);
    for (const id of ['docker', 'isolation', 'haproxy', 'acme', 'npm']) assert.ok(checks.has(id), id);
  });

  it("fails the clock check for a node whose clock is a minute ahead (the Date of its agent's answers)", async () => {
    // A node whose agent API answers with a clock 60 s ahead: registered and synced through the real agent protocol.
    const skewed = createServer((_req, res) => {
      res.sendDate = false;
      res.setHeader('date', new Date(Date.now() + 60_000).toUTCString());
      res.end();
    });
    await new Promise<void>((r) => skewed.listen(0, '127.0.0.1', r));
    try {
      const apiUrl = `http://127.0.0.1:${(skewed.address() as { port: number }).port}`;
      const join_ = readFileSync(join(h.home, 'join-token'), 'utf8').trim();
      const reg = await h.apiCall(
        'POST',
        '/api/v1/agent/register',
        { protocol: 1, name: 'skewed', address: '127.0.0.1', apiUrl, agentToken: 'x'.repeat(32) },
        join_,
      );
      assert.equal(reg.status, 201, JSON.stringify(reg.json));
      const sync = await h.apiCall(
        'POST',
        '/api/v1/agent/sync',
        { protocol: 1, instances: [] },
        (reg.json as { credential: string }).credential,
      );
      assert.equal(sync.status, 200, JSON.stringify(sync.json));
      const { code, checks } = await doctor();
      assert.equal(code, 1);
      assert.equal(checks.get('clocks')?.status, 'fail', JSON.stringify(checks.get('clocks')));
      assert.match(checks.get('clocks')!.summary, /skewed (59|60|61)s ahead/);
      assert.match(checks.get('clocks')!.fix!, /NTP/);
    } finally {
      await new Promise((r) => skewed.close(r));
      // The fake node goes away: drained so later checks see the local agent only.
      await h.apiCall('POST', '/api/v1/nodes/skewed/drain', { force: true });
    }
  });

  it('fails the token check with a wrong token, and skips what needs it', async () => {
    const wrong = join(emptyPath, 'wrong-token');
    writeFileSync(wrong, 'pilot_admin_wrong-token-0123456789\n');
    const { code, checks } = await doctor(['--token-file', wrong]);
    assert.equal(code, 1);
    assert.equal(checks.get('api')?.status, 'ok');
    assert.equal(checks.get('token')?.status, 'fail');
    assert.match(checks.get('token')!.summary, /refuses the token/);
    assert.equal(checks.get('agents')?.status, 'skip');
  });

  it('fails the API check when the server is stopped, and says how to start it', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as { port: number }).port;
    await new Promise((r) => probe.close(r));
    const { code, checks } = await doctor(['--server', `http://127.0.0.1:${port}`]);
    assert.equal(code, 1);
    assert.equal(checks.get('api')?.status, 'fail');
    assert.match(checks.get('api')!.summary, /does not answer \(ECONNREFUSED\)/);
    assert.match(checks.get('api')!.fix!, /pilot up/);
    for (const id of ['token', 'agents', 'clocks', 'registry']) assert.equal(checks.get(id)?.status, 'skip', id);
  });

  it('with several addresses, asks each replica and works through the one that answers', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const down = `http://127.0.0.1:${(probe.address() as { port: number }).port}`;
    await new Promise((r) => probe.close(r));
    const { checks } = await doctor(['--server', `${down},${h.api}`]);
    assert.equal(checks.get('api')?.status, 'warn');
    assert.equal(checks.get('api')!.summary, `1 of 2 replicas answer; ${down} does not answer (ECONNREFUSED)`);
    assert.equal(checks.get('token')?.status, 'ok');
    const bad = await doctor(['--server', `${h.api},,${down}`]);
    assert.equal(bad.code, 1);
    assert.equal(bad.checks.get('api')?.status, 'fail');
    assert.match(bad.checks.get('api')!.summary, /^--server: entry 2 of 3 is empty/);
    assert.match(bad.checks.get('api')!.fix!, /separated by commas/);
  });

  it('with no server known at all, says where it looked', async () => {
    const home = h.track(tempDir('doctor-home'));
    const { checks } = await doctor([], { PILOT_HOME: home });
    assert.equal(checks.get('api')?.status, 'fail');
    assert.ok(checks.get('api')!.summary.includes(join(home, 'server.json')));
  });

  it('fails the npm check when npm is not on PATH', async () => {
    const { code, checks } = await doctor([], { PATH: emptyPath });
    assert.equal(code, 1);
    assert.equal(checks.get('npm')?.status, 'fail');
    assert.match(checks.get('npm')!.summary, /npm not found/);
    assert.match(checks.get('npm')!.fix!, /runtimes add/);
    // The API checks do not need any binary.
    assert.equal(checks.get('api')?.status, 'ok');
  });

  it('checks HAProxy only when pilot up was started with it, and fails when its binary is missing', async () => {
    const home = h.track(tempDir('doctor-haproxy'));
    mkdirSync(home, { recursive: true });
    const server = JSON.parse(readFileSync(join(h.home, 'server.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(server.routerKind, 'pilot', 'pilot up records what serves the traffic');
    writeFileSync(join(home, 'server.json'), JSON.stringify({ ...server, routerKind: 'haproxy' }));
    writeFileSync(join(home, 'admin-token'), h.token);
    const missing = await doctor([], { PILOT_HOME: home, PILOT_HAPROXY_BIN: join(emptyPath, 'haproxy') });
    assert.equal(missing.checks.get('haproxy')?.status, 'fail');
    assert.match(missing.checks.get('haproxy')!.fix!, /apt-get install haproxy/);
    const plain = await doctor();
    assert.equal(plain.checks.get('haproxy')?.status, 'skip');
  });

  it('checks the stored registry credentials against the registry itself', { skip: registrySkip }, async () => {
    const reg = await startRegistry({ user: { username: 'ci', password: 'right-password-123' } });
    try {
      const set = setRegistry(reg.url, 'wrong-password-456');
      assert.equal(set.status, 0, set.stderr);
      const wrong = await doctor();
      assert.equal(wrong.checks.get('registry')?.status, 'fail');
      assert.match(wrong.checks.get('registry')!.summary, /refuses the credentials of ci/);
      assert.ok(!JSON.stringify([...wrong.checks.values()]).includes('wrong-password'), 'the password is never printed');
      assert.equal(setRegistry(reg.url, 'right-password-123').status, 0);
      const right = await doctor();
      assert.equal(right.checks.get('registry')?.status, 'ok', right.checks.get('registry')?.summary);
    } finally {
      await h.cli(['registry', 'remove', reg.url]);
      await reg.stop();
    }
  });

  it('fails the ACME check for an address that is no ACME directory', async () => {
    const srv = createServer((_req, res) => res.end('<html>not acme</html>'));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/directory`;
      const { checks } = await doctor([], { PILOT_ACME_DIRECTORY: url });
      assert.equal(checks.get('acme')?.status, 'fail');
      assert.match(checks.get('acme')!.summary, /not an ACME directory/);
    } finally {
      await new Promise((r) => srv.close(r));
    }
  });

  it('prints a table with a fix under each problem, without colours when not on a terminal', async () => {
    const r = await h.cli(['doctor', '--timeout', '10s'], { env: { PATH: emptyPath } });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^ok {4}api /m);
    assert.match(r.stdout, /^FAIL {2}npm /m);
    assert.match(r.stdout, /fix: Runtime pinning/);
    assert.match(r.stdout, /\d+ passed, \d+ warning\(s\), \d+ failed/);
    assert.doesNotMatch(r.stdout, /\x1b\[/);
  });

  it(
    'colours its verdicts on a terminal, and not with NO_COLOR',
    { skip: existsSync('/usr/bin/script') ? false : 'no script(1) (util-linux) for a pseudo-terminal' },
    () => {
      // script(1) runs the command on a pseudo-terminal: stdout is a TTY as in a real shell.
      const onTty = (env: Record<string, string>): string =>
        spawnSync('script', ['-qec', `${process.execPath} ${PILOT} doctor --timeout 10s`, '/dev/null'], {
          cwd: ROOT,
          env: { ...h.env(env), TERM: 'xterm' },
          encoding: 'utf8',
          timeout: 120_000,
        }).stdout;
      const coloured = onTty({});
      assert.match(coloured, /\x1b\[32mok {2}\x1b\[39m {2}api/);
      const plain = onTty({ NO_COLOR: '1' });
      assert.match(plain, /^ok {4}api /m);
      assert.doesNotMatch(plain, /\x1b\[3\dm/);
    },
  );

  it('refuses a --timeout that is no duration', async () => {
    const r = await h.cli(['doctor', '--timeout', 'soon']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--timeout "soon" is not a duration/);
  });
});
