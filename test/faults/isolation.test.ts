/**
 * Hostile apps on the process runtime, deployed through `pilot up` as root: a probe that tries to
 * read every file under $PILOT_HOME and every other app's folder and process environment, a memory
 * leak above its 64 MB limit, a child that detaches into its own session, an app that ignores
 * SIGTERM, and an app flooding its log at ~20 MB/s. Needs root (uid switch, cgroups).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { request } from 'undici';
import { git, Harness, makeRepo, sleep, tempDir, waitFor } from '../integration/harness.js';
import { readProcStat } from '../../src/os/proc.js';

const isRoot = process.getuid?.() === 0;
const h = new Harness();
const SECRET = `victim-secret-${process.pid}-${Date.now()}`;

/** An app folder (package.json, server.js, pilot.yaml) committed to a new git repository. */
async function appRepo(name: string, server: string, yaml: string): Promise<string> {
  const dir = h.track(tempDir(`src-${name}`));
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name, version: '1.0.0', private: true, type: 'module', scripts: { start: 'node server.js' } }),
  );
  writeFileSync(
    join(dir, 'package-lock.json'),
    JSON.stringify({ name, version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name, version: '1.0.0' } } }),
  );
  writeFileSync(join(dir, 'server.js'), server);
  writeFileSync(join(dir, 'pilot.yaml'), `name: ${name}\nhealth:\n  path: /healthz\n  interval: 1s\nreplicas: 1\n${yaml}`);
  return h.track(await makeRepo(dir));
}

/** A server answering /healthz, plus `routes` (an object literal of path → async handler returning JSON). */
const server = (setup: string, routes: string): string => `
import { createServer } from 'node:http';
${setup}
const routes = ${routes};
createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  let body = '';
  for await (const c of req) body += c;
  const fn = routes[url.pathname];
  const out = url.pathname === '/healthz' ? { ok: true } : fn ? await fn(body) : { error: 'no route' };
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(out));
}).listen(Number(process.env.PORT));
`;

async function deploy(repo: string): Promise<void> {
  const r = await h.cli(['run', repo]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
}

async function instances(
  app: string,
): Promise<{ id: string; state: string; pid?: number; lastError?: string; restarts: number; port?: number }[]> {
  return (await h.apiCall('GET', `/api/v1/apps/${app}`)).json.instances;
}

async function call(app: string, path: string, body?: string): Promise<any> {
  const inst = (await instances(app)).find((i) => i.state === 'ready');
  assert.ok(inst?.port, `${app} has a ready instance`);
  const r = await request(`http://127.0.0.1:${inst.port}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    body,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
  return r.body.json();
}

/** Every file and folder below `dir`; one removed meanwhile (instances come and go) is left out. */
function walk(dir: string): string[] {
  const out: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw e;
  }
  for (const n of names) {
    const p = join(dir, n);
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (st === undefined) continue;
    if (st.isDirectory()) out.push(p, ...walk(p));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

function alive(pid: number, startTime: string): boolean {
  const st = readProcStat(pid);
  return st !== undefined && st.startTime === startTime && st.state !== 'Z';
}

describe('hostile apps on the process runtime (root)', { skip: isRoot ? false : 'needs root', timeout: 600_000 }, () => {
  before(async () => {
    await h.startUp();
    // The victim's secret is a Pilot secret (encrypted at rest, in the instance's env at exec), not in its source.
    const victim = await appRepo(
      'victim',
      server(
        '',
        `{ '/pid': async () => ({ pid: process.pid, uid: process.getuid(), hasSecret: (process.env.VICTIM_TOKEN ?? '').startsWith('victim-secret-') }) }`,
      ),
      '',
    );
    await deploy(victim);
    const set = await h.apiCall('PUT', '/api/v1/apps/victim/secrets/VICTIM_TOKEN', { value: SECRET });
    assert.ok(set.status < 300, JSON.stringify(set.json));
    writeFileSync(join(victim, 'README'), 'second revision, with the secret\n');
    await git(victim, 'add', '-A');
    await git(victim, 'commit', '-qm', 'second');
    await deploy(victim);
  });
  after(async () => {
    // Stop what is still running the proper way (cgroups removed), then the harness kills the rest.
    for (const app of ['victim', 'probe', 'leaky', 'flood']) await h.cli(['scale', app, '0']);
    await waitFor(
      'every instance stopped',
      async () => {
        const all = await Promise.all(
          ['victim', 'probe', 'leaky', 'flood'].map(async (a) => (await instances(a).catch(() => [])).filter((i) => i.state !== 'stopped')),
        );
        return all.every((l) => l.length === 0) || undefined;
      },
      60_000,
    ).catch(() => undefined);
    await h.cleanup();
  });

  it('keeps $PILOT_HOME private: modes 0600 files, 0700 folders (0711 on the path to the shared folder)', () => {
    assert.ok([0o700, 0o711].includes(statSync(h.home).mode & 0o777), (statSync(h.home).mode & 0o777).toString(8));
    for (const f of ['admin-token', 'join-token', 'secret.key', 'pilot.db', 'agent/node.json', 'agent/uids.json']) {
      assert.equal(statSync(join(h.home, f)).mode & 0o777, 0o600, f);
    }
    const agent = join(h.home, 'agent');
    assert.equal(statSync(agent).mode & 0o777, 0o711);
    for (const d of ['releases', 'runtimes', 'work']) assert.equal(statSync(join(agent, d)).mode & 0o777, 0o711, d);
    assert.equal(statSync(join(agent, 'releases', 'downloads')).mode & 0o777, 0o700);
    const shared = (p: string): boolean =>
      ['releases', 'runtimes', 'work'].some((d) => p.startsWith(join(agent, d) + '/')) &&
      !p.startsWith(join(agent, 'releases', 'downloads'));
    // Below a folder others cannot search (no o+x), nothing is reachable by an app, whatever its mode.
    const reachable = (p: string): boolean => {
      for (let d = dirname(p); d.startsWith(h.home + '/'); d = dirname(d)) if ((statSync(d).mode & 0o001) === 0) return false;
      return true;
    };
    // Instances come and go while the tree is walked (a replaced instance's work folder is removed):
    // a path gone by the time it is looked at is skipped.
    const gone = (p: string): boolean => !existsSync(p);
    for (const p of walk(h.home)) {
      if (gone(p)) continue;
      let isReachable: boolean;
      try {
        isReachable = reachable(p);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
      if (!isReachable) continue;
      const st = statSync(p, { throwIfNoEntry: false });
      if (st === undefined) continue;
      if (shared(p)) {
        // Shared on purpose: readable trees nobody else can write, and work folders of their app uid only.
        assert.equal(st.mode & 0o022, 0, `${p} is writable by others`);
        if (p.startsWith(join(agent, 'work') + '/'))
          assert.ok(st.uid >= 61000 && (st.mode & 0o077) === 0, `${p}: ${st.uid} ${(st.mode & 0o777).toString(8)}`);
        else assert.equal(st.uid, 0, p);
        continue;
      }
      const mode = st.mode & 0o777;
      const dirOk = st.isDirectory() && (mode & 0o066) === 0;
      if (!(dirOk || (mode & 0o077) === 0)) process.stdout.write(`# not private: ${p} ${mode.toString(8)}\n`);
      assert.ok(dirOk || (mode & 0o077) === 0, `${p} is ${mode.toString(8)}`);
    }
  });

  it("a probe app reads nothing secret: not the tokens, keys, database, agent state, nor another app's env, logs or process", async () => {
    const probeSrc = server(
      `import { readFileSync, readdirSync } from 'node:fs';
import { dirname } from 'node:path';`,
      `{
  '/probe': async (body) => {
    const readable = [];
    for (const f of JSON.parse(body)) { try { readFileSync(f); readable.push(f); } catch {} }
    const listable = [];
    for (let d = process.cwd(); d !== '/'; d = dirname(d)) { try { readdirSync(d); listable.push(d); } catch {} }
    const environs = [];
    for (const p of readdirSync('/proc').filter((n) => /^\\d+$/.test(n))) {
      try { if (readFileSync('/proc/' + p + '/environ', 'utf8').includes('VICTIM_TOKEN')) environs.push(p); } catch {}
    }
    let wroteRelease = false;
    try { (await import('node:fs')).writeFileSync('pwned.txt', 'x'); wroteRelease = true; } catch {}
    return { uid: process.getuid(), gid: process.getgid(), groups: process.getgroups(), cwd: process.cwd(), home: process.env.HOME, readable, listable, environs, wroteRelease };
  },
}`,
    );
    await deploy(await appRepo('probe', probeSrc, ''));
    const victim = await call('victim', '/pid');
    const victimInst = (await instances('victim'))[0]!;
    // Every path under $PILOT_HOME, named for the probe as an attacker who guessed every name would.
    const everything = walk(h.home);
    const r = await call('probe', '/probe', JSON.stringify(everything));
    assert.ok(r.uid >= 61000 && r.uid <= 65000, `probe runs as a dynamic uid, not ${r.uid}`);
    assert.equal(r.gid, r.uid);
    assert.deepEqual(
      r.groups.filter((g: number) => g !== r.gid),
      [],
      'no supplementary groups',
    );
    assert.equal(victim.hasSecret, true, 'the victim got its secret through its env');
    assert.ok(victim.uid >= 61000 && victim.uid !== r.uid, `victim has its own uid (${victim.uid} vs ${r.uid})`);
    assert.deepEqual(r.environs, [], 'no other process environment is readable');
    assert.equal(r.wroteRelease, false, 'the release is read-only to the app');
    const agent = join(h.home, 'agent');
    const allowed = (f: string): boolean =>
      f.startsWith(join(agent, 'releases') + '/') || f.startsWith(join(agent, 'runtimes') + '/') || f.startsWith(r.home);
    const leaked = (r.readable as string[]).filter((f) => !allowed(f));
    assert.deepEqual(leaked, [], 'only release/runtime trees and its own home are readable');
    for (const f of r.readable as string[]) assert.ok(!readFileSync(f, 'utf8').includes(SECRET), `${f} holds the victim's secret`);
    for (const secret of [
      'admin-token',
      'secret.key',
      'pilot.db',
      'agent/node.json',
      `agent/instances/${victimInst.id}/instance.json`,
      `agent/instances/${victimInst.id}/stdout.log`,
    ]) {
      assert.ok(everything.includes(join(h.home, secret)), `${secret} exists (the probe was offered it)`);
      assert.ok(!(r.readable as string[]).includes(join(h.home, secret)), `${secret} is readable`);
    }
    assert.deepEqual(
      (r.listable as string[]).filter((d) => d.startsWith(h.home) && d !== r.cwd),
      [],
      'no folder of $PILOT_HOME but its own release can be listed',
    );
    const nodes = await h.cli(['nodes', '--json']);
    const iso = JSON.parse(nodes.stdout).nodes[0].runtimes.process.isolation;
    assert.equal(iso.user, true);
    assert.equal(typeof iso.cgroup, 'boolean');
    process.stdout.write(`# isolation reported: ${JSON.stringify(iso)}; probe uid ${r.uid}, victim uid ${victim.uid}\n`);
  });

  it('an app leaking memory above resources.memory 64MB is killed and reported as out of memory, then restarted', async () => {
    const leak = server(
      'const hog = [];\nsetTimeout(() => setInterval(() => { const b = Buffer.alloc(8 << 20, 1); hog.push(b); }, 50), 1500);',
      '{}',
    );
    const repo = await appRepo('leaky', leak, 'resources:\n  memory: 64MB\n');
    await h.cli(['run', repo]); // may or may not see it ready before the first OOM kill
    const inst = await waitFor(
      'an OOM-killed restart',
      async () => (await instances('leaky')).find((i) => i.restarts >= 1 && /out of memory/.test(i.lastError ?? '')),
      120_000,
    );
    assert.match(inst.lastError!, /^killed: out of memory \(limit 64 MB\)/);
  });

  it('a child that detaches into its own session (setsid, detached + unref) leaves no process after stop', async () => {
    const src = server(
      `import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
const stat = (pid) => readFileSync('/proc/' + pid + '/stat', 'utf8').split(') ')[1].split(' ')[19];
const a = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)'], { detached: true, stdio: 'ignore' }); a.unref();
const b = spawn('setsid', ['sh', '-c', 'sleep 100000 & echo $!'], { stdio: ['ignore', 'pipe', 'ignore'] });
let bPid = 0; b.stdout.on('data', (d) => { bPid = Number(String(d).trim()); });`,
      `{ '/pids': async () => ({ pids: [process.pid, a.pid, bPid].filter(Boolean).map((p) => ({ pid: p, startTime: stat(p) })) }) }`,
    );
    await deploy(await appRepo('detacher', src, ''));
    const { pids } = await waitFor('three pids', async () => {
      const r = await call('detacher', '/pids');
      return r.pids.length === 3 ? r : undefined;
    });
    for (const p of pids) assert.ok(alive(p.pid, p.startTime), `pid ${p.pid} runs before the stop`);
    const sid = readProcStat(pids[2].pid)?.session;
    assert.notEqual(sid, pids[0].pid, 'the sleep is in a session of its own');
    const rm = await h.cli(['scale', 'detacher', '0']);
    assert.equal(rm.code, 0, rm.stdout + rm.stderr);
    await waitFor(
      'every process of the instance gone',
      () => pids.every((p: { pid: number; startTime: string }) => !alive(p.pid, p.startTime)),
      60_000,
    );
  });

  it('an app ignoring SIGTERM gets it, and SIGKILL after its stop_timeout', async () => {
    const src = server("process.on('SIGTERM', () => console.log('ignoring SIGTERM'));", `{ '/pid': async () => ({ pid: process.pid }) }`);
    await deploy(await appRepo('stubborn', src, 'deploy:\n  stop_timeout: 3s\n'));
    const inst = (await instances('stubborn'))[0]!;
    const pid = (await call('stubborn', '/pid')).pid as number;
    const startTime = readProcStat(pid)!.startTime;
    const log = join(h.home, 'agent', 'instances', inst.id, 'stdout.log');
    const rm = await h.cli(['scale', 'stubborn', '0']);
    assert.equal(rm.code, 0, rm.stdout + rm.stderr);
    await waitFor(
      'the app to log that it ignored SIGTERM',
      () => {
        try {
          return readFileSync(log, 'utf8').includes('ignoring SIGTERM');
        } catch {
          return alive(pid, startTime) ? undefined : 'gone';
        }
      },
      30_000,
    );
    await waitFor('SIGKILL after the grace period', () => !alive(pid, startTime), 60_000);
  });

  it('an app flooding stdout at ~20 MB/s stays within 3 × 10 MB per stream on disk', async () => {
    const src = server(
      `let written = 0;
const line = Buffer.alloc(64 * 1024, 'x'); line[line.length - 1] = 10;
setInterval(() => { for (let i = 0; i < 16; i++) { process.stdout.write(line); written += line.length; } }, 50);`,
      `{ '/written': async () => ({ written }) }`,
    );
    await deploy(await appRepo('flood', src, ''));
    const inst = (await instances('flood'))[0]!;
    const stateDir = join(h.home, 'agent', 'instances', inst.id);
    let peak = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 8_000) {
      peak = Math.max(peak, Number(execFileSync('du', ['-sb', '--exclude=*.json', stateDir], { encoding: 'utf8' }).split('\t')[0]));
      await sleep(200);
    }
    const { written } = await call('flood', '/written');
    process.stdout.write(
      `# flood: ${(written / 1e6).toFixed(0)} MB written in ~8 s, peak disk use of its logs ${(peak / 1e6).toFixed(1)} MB\n`,
    );
    assert.ok(written > 60e6, `the app wrote more than the cap (${written} bytes)`);
    assert.ok(peak <= 3 * 10 * 1024 * 1024 + 1024 * 1024, `logs used ${peak} bytes`);
    const files = readdirSync(stateDir).filter((n) => n.startsWith('stdout.log'));
    for (const f of files) assert.ok(statSync(join(stateDir, f)).size <= 10 * 1024 * 1024, f);
  });
});
