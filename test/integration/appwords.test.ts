/**
 * Failures in the app's own words, the release phase, and fixed ports without downtime, end to end
 * through `pilot up` + `pilot run`: fixture apps of our own (no dependencies, `run: node …`).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, readdirSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { git, Harness, makeRepo, sleep, tempDir, waitFor } from './harness.js';
import { netnsSupport } from '../../src/agent/netns.js';
import { allocatePort } from '../../src/os/ports.js';

const h = new Harness();
const netnsBefore = new Set<string>();
const listNetns = (): string[] =>
  execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith('pilot-'));

/** A committed git repository holding `files`. */
async function repoOf(files: Record<string, string>): Promise<string> {
  const dir = tempDir('app');
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const repo = h.track(await makeRepo(dir));
  h.track(dir);
  return repo;
}

/** Replace files in a repository and commit them. */
async function commit(repo: string, files: Record<string, string>, message: string): Promise<void> {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(repo, name), text);
  await git(repo, 'add', '-A');
  await git(repo, 'commit', '-qm', message);
}

/** A server answering its revision (and `extra`) on $PORT, or on `fixedPort` whatever PORT says. */
const server = (opts: { fixedPort?: number; extra?: string; before?: string } = {}): string => `
import { createServer } from 'node:http';
${opts.before ?? ''}
const port = ${opts.fixedPort ?? 'Number(process.env.PORT)'};
const body = () => JSON.stringify({ revision: process.env.PILOT_REVISION, pid: process.pid${opts.extra ? `, ${opts.extra}` : ''} });
const server = createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(body()); });
server.listen(port, () => console.log('listening on ' + port));
process.on('SIGTERM', () => { server.close(() => process.exit(0)); server.closeIdleConnections(); setTimeout(() => process.exit(0), 3000).unref(); });
`;

async function get(host: string): Promise<{ status: number; json: any; text: string }> {
  const r = await h.viaRouter(host);
  let json: unknown;
  try {
    json = JSON.parse(r.text);
  } catch {
    json = undefined;
  }
  return { status: r.status, json, text: r.text };
}

describe("failures in the app's own words, release phase, fixed port", { timeout: 600_000 }, () => {
  before(async () => {
    if ((await netnsSupport()).available) for (const n of listNetns()) netnsBefore.add(n);
    await h.startUp({ PILOT_CACHE_GC_INTERVAL: '0' });
  });
  after(async () => {
    await h.cleanup();
    // Namespaces this test's agent made and did not remove (a failed assertion): delete them.
    if ((await netnsSupport()).available) {
      for (const n of listNetns().filter((x) => !netnsBefore.has(x))) {
        for (const pid of execFileSync('ip', ['netns', 'pids', n], { encoding: 'utf8' }).split(/\s+/).filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            // gone
          }
        }
        execFileSync('ip', ['netns', 'del', n]);
      }
    }
  });

  it("a crash at start: its FATAL line is in pilot run's error, the run log and pilot logs (also --previous), secrets masked", async () => {
    const repo = await repoOf({
      'pilot.yaml': 'name: crashy\nrun: node server.js\n',
      'server.js': server(),
    });
    const first = await h.cli(['run', repo]);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const secret = 'sk_live_51HxQ9Zsecretvalue';
    const s = await h.cli(['secrets', 'set', 'crashy', 'API_TOKEN', secret]);
    assert.equal(s.code, 0, s.stdout + s.stderr);
    await commit(
      repo,
      {
        'pilot.yaml': 'name: crashy\nrun: node server.js\ndeploy:\n  ready_timeout: 30s\n',
        'server.js':
          'console.log("crashy: booting");\nconsole.error("using token " + process.env.API_TOKEN);\nif (!process.env.DATABASE_URL) { console.error("FATAL: DATABASE_URL is not set"); process.exit(1); }\n',
      },
      'needs a database',
    );
    const r = await h.cli(['run', repo]);
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /rollout #\d+ failed: instance crashy-2-\w+ of revision 2 crashed 3 times: exited with code 1; revision 1 keeps serving/,
    );
    assert.match(r.stderr, /FATAL: DATABASE_URL is not set/);
    assert.match(r.stderr, /using token \*\*\*/);
    assert.ok(!(r.stdout + r.stderr).includes(secret), 'the secret is masked');
    assert.equal((await get('crashy.localhost')).json.revision, '1');

    const run = JSON.parse((await h.cli(['runs', 'crashy', '--json'])).stdout).runs[0];
    assert.equal(run.status, 'failed');
    assert.match(run.error, /FATAL: DATABASE_URL is not set/);
    const runLog = await h.cli(['logs', '--run', String(run.id)]);
    assert.match(runLog.stdout, /last output of crashy-2-\w+:\n.*\| crashy: booting[\s\S]*\| FATAL: DATABASE_URL is not set/);
    assert.ok(!runLog.stdout.includes(secret));

    // The failed instance is stopped, its logs kept: shown by default (a revision newer than the active one) and with --previous.
    const logs = await waitFor("the failed instance's kept logs", async () => {
      const l = await h.cli(['logs', 'crashy']);
      return /FATAL: DATABASE_URL is not set/.test(l.stdout) ? l : undefined;
    });
    assert.match(logs.stdout, /\[crashy-1-\w+\] listening on/); // the live one too
    assert.match(logs.stdout, /\[(crashy-2-\w+)\] --- instance of revision 2, stopped \S+: exited with code 1 ---/);
    assert.ok(!logs.stdout.includes(secret));
    const prev = await h.cli(['logs', 'crashy', '--previous']);
    assert.equal(prev.code, 0, prev.stderr);
    assert.match(prev.stdout, /FATAL: DATABASE_URL is not set/);
    assert.ok(!/listening on/.test(prev.stdout), '--previous shows only stopped instances');
    const id = /\[(crashy-2-\w+)\]/.exec(prev.stdout)![1]!;
    const one = await h.cli(['logs', 'crashy', '--instance', id]);
    assert.match(one.stdout, new RegExp(`\\[${id}\\] FATAL: DATABASE_URL is not set`));
    const none = await h.cli(['logs', 'crashy', '--instance', 'crashy-9-abcdef']);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /instance crashy-9-abcdef of app "crashy" not found/);
    const bad = await h.cli(['logs', 'crashy', '--instance', '../../etc/passwd']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /not an instance id/);
  });

  it('a probe failure: the rollout reason carries what the app printed while failing', async () => {
    const repo = await repoOf({
      'pilot.yaml': 'name: sulky\nrun: node server.js\ndeploy:\n  ready_timeout: 5s\n',
      'server.js': `import { createServer } from 'node:http';
setInterval(() => console.log('waiting for redis at 10.0.0.9:6379 (not answering)'), 300);
createServer((req, res) => { res.writeHead(503); res.end('not yet'); }).listen(Number(process.env.PORT));
`,
    });
    const r = await h.cli(['run', repo]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /revision 1 was not ready within 5s: health check GET \/ failed: HTTP 503/);
    assert.match(r.stderr, /last output of sulky-1-\w+:\n\s+waiting for redis at 10\.0\.0\.9:6379/);
    assert.match(r.stderr, /no revision is serving/);
  });

  it("a release phase runs once before traffic moves, with the app's env and secrets; its output is in the run log", async () => {
    const markers = h.track(tempDir('markers'));
    chmodSync(markers, 0o1777); // the app runs as its own uid when Pilot is root
    const files = {
      'pilot.yaml': `name: relapp\nenv:\n  MARKER_DIR: ${markers}\n`,
      Procfile: 'web: node server.js\nrelease: node release.js\n',
      'release.js': `import { appendFileSync, writeFileSync } from 'node:fs';
appendFileSync(process.env.MARKER_DIR + '/runs.log', process.env.PILOT_REVISION + '\\n');
console.log('migrating the database for revision ' + process.env.PILOT_REVISION);
console.log('secret present: ' + (process.env.DB_PASSWORD ? 'yes' : 'no') + ', PORT: ' + (process.env.PORT ?? 'none'));
writeFileSync(process.env.MARKER_DIR + '/release-' + process.env.PILOT_REVISION, String(Date.now()));
console.log('migrations done');
`,
      // Refuses to start before its release phase ran: proof that it ran first.
      'server.js': server({
        before: `import { existsSync } from 'node:fs';
const marker = process.env.MARKER_DIR + '/release-' + process.env.PILOT_REVISION;
if (!existsSync(marker)) { console.error('no release marker ' + marker); process.exit(1); }`,
        extra: 'marker: true',
      }),
    };
    const repo = await repoOf(files);
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /release phase: node release\.js \(Procfile release:\)/);
    assert.match(r.stdout, /release phase relapp-1-release-\w+: succeeded/);
    assert.match(r.stdout, /\| migrating the database for revision 1\n.*\| secret present: no, PORT: none\n.*\| migrations done/);
    assert.deepEqual(readdirSync(markers).sort(), ['release-1', 'runs.log']);
    assert.equal((await get('relapp.localhost')).json.marker, true);
    // The release instance is gone once the rollout ended; only the web instance is left.
    await waitFor('the release instance to go', async () => {
      const inst = (await h.apiCall('GET', '/api/v1/apps/relapp')).json.instances as { kind: string }[];
      return inst.length === 1 && inst[0]!.kind === 'web' ? true : undefined;
    });

    // Second deploy: a secret reaches the release phase as it reaches the app.
    assert.equal((await h.cli(['secrets', 'set', 'relapp', 'DB_PASSWORD', 'hunter2-very-secret'])).code, 0);
    // ... and a Procfile line with shell syntax runs under /bin/sh -c; what it prints is masked.
    await commit(
      repo,
      {
        'release.js': files['release.js'].replace('migrations done', 'migrations done (v2)'),
        Procfile: 'web: node server.js\nrelease: echo "shell says $PILOT_REVISION, password $DB_PASSWORD" && node release.js\n',
      },
      'v2',
    );
    const r2 = await h.cli(['run', repo]);
    assert.equal(r2.code, 0, r2.stdout + r2.stderr);
    assert.match(r2.stdout, /\| shell says 2, password \*\*\*\n/);
    assert.ok(!r2.stdout.includes('hunter2-very-secret'));
    assert.match(r2.stdout, /\| secret present: yes, PORT: none/);
    assert.match(r2.stdout, /migrations done \(v2\)/);
    assert.deepEqual(readdirSync(markers).sort(), ['release-1', 'release-2', 'runs.log']);
    const run = JSON.parse((await h.cli(['runs', 'relapp', '--json'])).stdout).runs[0];
    assert.match((await h.cli(['logs', '--run', String(run.id)])).stdout, /migrations done \(v2\)/);
    // A rollback does not run the release phase again (Heroku's rule): the revision's ran when it was deployed.
    const rb = await h.cli(['rollback', 'relapp', '--to', '1']);
    assert.equal(rb.code, 0, rb.stdout + rb.stderr);
    await waitFor('revision 1 to serve again', async () => ((await get('relapp.localhost')).json?.revision === '1' ? true : undefined));
    assert.equal(readFileSync(join(markers, 'runs.log'), 'utf8'), '1\n2\n');
  });

  it('a failing release phase stops the deploy with its output; the old revision keeps serving', async () => {
    const markers = h.track(tempDir('markers'));
    chmodSync(markers, 0o1777); // the app runs as its own uid when Pilot is root
    const repo = await repoOf({
      'pilot.yaml': `name: relfail\nrelease: [node, release.js]\nrun: node server.js\nenv:\n  MARKER_DIR: ${markers}\n`,
      'release.js': `console.log('applying migration 006'); console.log('applying migration 007');\n`,
      'server.js': server(),
    });
    assert.equal((await h.cli(['run', repo])).code, 0);
    const live = (await get('relfail.localhost')).json;
    await commit(
      repo,
      {
        'release.js': `console.log('applying migration 007');\nconsole.error('ERROR: migration 007 failed: column "email" already exists');\nprocess.exit(3);\n`,
      },
      'bad migration',
    );
    const r = await h.cli(['run', repo]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /release phase: node release\.js \(pilot\.yaml release\)/);
    assert.match(
      r.stderr,
      /rollout #\d+ failed: release phase of revision 2 failed: release phase exited with code 3 after \d+s; revision 1 keeps serving/,
    );
    assert.match(r.stderr, /ERROR: migration 007 failed: column "email" already exists/);
    assert.match(r.stdout, /\| ERROR: migration 007 failed/); // its output in the run log
    const after_ = (await get('relfail.localhost')).json;
    assert.equal(after_.revision, '1');
    assert.equal(after_.pid, live.pid);
    const instances = (await h.apiCall('GET', '/api/v1/apps/relfail')).json.instances as { revision: number; kind: string }[];
    assert.ok(!instances.some((i) => i.revision === 2 && i.kind === 'web'), 'no web instance of the failed revision was started');

    // A release phase that hangs is killed at deploy.release_timeout.
    await commit(
      repo,
      {
        'pilot.yaml': `name: relfail\nrelease: [node, release.js]\nrun: node server.js\ndeploy:\n  release_timeout: 2s\n`,
        'release.js': `console.log('waiting for a lock'); setInterval(() => {}, 1000);\n`,
      },
      'hanging release',
    );
    const t = await h.cli(['run', repo]);
    assert.notEqual(t.code, 0);
    assert.match(t.stderr, /release phase timed out after 2s \(deploy\.release_timeout\)/);
    assert.match(t.stderr, /waiting for a lock/);
    assert.equal((await get('relfail.localhost')).json.pid, live.pid);

    // A release command that does not exist: the shell's own words, and nothing moves.
    await commit(repo, { 'pilot.yaml': 'name: relfail\nrelease: [no-such-migrate-tool, --up]\nrun: node server.js\n' }, 'missing tool');
    const m = await h.cli(['run', repo]);
    assert.notEqual(m.code, 0);
    assert.match(m.stderr, /release phase exited with code 127/);
    assert.match(m.stderr, /no-such-migrate-tool: (command )?not found/);
    assert.equal((await get('relfail.localhost')).json.pid, live.pid);
  });

  it('a fixed-port app switches revisions with zero failed requests (own network namespace per instance; root)', async (t) => {
    const support = await netnsSupport();
    if (!support.available) return t.skip(`netns: ${support.error}`);
    const repo = await repoOf({
      'pilot.yaml': 'name: fixed\nrun: node server.js\nport: 3000\nreplicas: 2\ndeploy:\n  drain: 1s\n',
      'server.js': server({ fixedPort: 3000, extra: "v: 'one'" }),
    });
    const first = await h.cli(['run', repo]);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.match(first.stdout, /fixed port 3000: each instance gets its own network namespace/);
    assert.match(first.stdout, /ready on 10\.213\.\d+\.\d+:3000/);
    await commit(repo, { 'server.js': server({ fixedPort: 3000, extra: "v: 'two'" }) }, 'two');
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const seen = new Set<string>();
    const loop = async (): Promise<void> => {
      while (!stop) {
        try {
          const res = await request(h.router + '/', { headers: { host: 'fixed.localhost' } });
          const text = await res.body.text();
          if (res.statusCode !== 200) failures.push(`${res.statusCode} ${text}`);
          else {
            ok++;
            seen.add((JSON.parse(text) as { v: string }).v);
          }
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const loops = [loop(), loop(), loop()];
    const r = await h.cli(['run', repo]);
    await sleep(2000); // through the drain and stop of the old instances
    stop = true;
    await Promise.all(loops);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(failures, [], `${failures.length} failed of ${failures.length + ok}`);
    assert.ok(ok > 50, `only ${ok} requests made`);
    assert.deepEqual([...seen].sort(), ['one', 'two']);

    // The old instances' namespaces are gone; the new ones' exist. pilot up SIGKILLed and restarted:
    // the instances are re-adopted with their namespaces and keep answering.
    const ours = (): string[] => listNetns().filter((n) => !netnsBefore.has(n));
    await waitFor('old namespaces to be removed', () => (ours().length === 2 ? true : undefined));
    const fixedPids = (): number[] => {
      const dir = join(h.home, 'agent', 'instances');
      return readdirSync(dir)
        .filter((id) => id.startsWith('fixed-') && existsSync(join(dir, id, 'pid.json')))
        .map((id) => (JSON.parse(readFileSync(join(dir, id, 'pid.json'), 'utf8')) as { pid: number }).pid);
    };
    const pids = fixedPids();
    assert.equal(pids.length, 2);
    await h.killUp();
    await h.startUp({ PILOT_CACHE_GC_INTERVAL: '0' });
    await waitFor('re-adopted instances to serve', async () => ((await get('fixed.localhost')).json?.v === 'two' ? true : undefined));
    assert.deepEqual(fixedPids().sort(), pids.sort(), 'the same processes, not new ones');
    assert.equal(ours().length, 2);

    // Scaled to zero: every namespace of the app goes, with what ran inside.
    assert.equal((await h.cli(['scale', 'fixed', '0'])).code, 0);
    await waitFor('namespaces to be removed after scale 0', () => (ours().length === 0 ? true : undefined));
    for (const pid of pids)
      assert.ok(!existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] === 'Z', `pid ${pid} is gone`);
  });
});

describe('fixed port without network namespaces (PILOT_NETNS=0, as for an agent that is not root)', { timeout: 300_000 }, () => {
  const plain = new Harness();
  before(() => plain.startUp({ PILOT_NETNS: '0', PILOT_CACHE_GC_INTERVAL: '0' }));
  after(() => plain.cleanup());

  it('falls back to recreate, says so in the run log, and still deploys', async () => {
    const dir = plain.track(tempDir('app'));
    // A port of its own per test run: without namespaces it is the machine's port.
    const port = await allocatePort();
    writeFileSync(join(dir, 'pilot.yaml'), `name: fixedplain\nrun: node server.js\nport: ${port}\n`);
    writeFileSync(join(dir, 'server.js'), server({ fixedPort: port, extra: "v: 'one'" }));
    const repo = plain.track(await makeRepo(dir));
    const first = await plain.cli(['run', repo]);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.match(first.stdout, new RegExp(`fixed port ${port}: recreate \\(the old instances stop before the new ones start`));
    writeFileSync(join(repo, 'server.js'), server({ fixedPort: port, extra: "v: 'two'" }));
    await git(repo, 'commit', '-qam', 'two');
    const second = await plain.cli(['run', repo]);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    const r = await plain.viaRouter('fixedplain.localhost');
    assert.equal((JSON.parse(r.text) as { v: string }).v, 'two');
    const nodes = JSON.parse((await plain.cli(['nodes', '--json'])).stdout).nodes as {
      runtimes: { netns?: { available: boolean; error?: string } };
    }[];
    assert.deepEqual(nodes[0]!.runtimes.netns, { available: false, error: 'turned off (PILOT_NETNS=0)' });
  });
});
