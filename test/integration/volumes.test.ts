/**
 * Volumes on the process runtime, the way a user runs them: `pilot server` and two `pilot agent`
 * processes (127.0.0.2 and 127.0.0.3), `pilot run` of a real git repository. An app with a volume
 * and two replicas gets both replicas on one node; what revision 1 writes, revision 2 reads, and a
 * killed instance finds it again after its restart. When the volume's node goes down, the app
 * waits (pending, with the reason, in `pilot status`) and never starts empty on the other node,
 * until `pilot volumes forget` lets it.
 */
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { git, Harness, makeRepo, sleep, tempDir, waitFor } from './harness.js';

const h = new Harness();
const nodes = [
  { name: `vol${process.pid}a`, address: '127.0.0.2', home: '', proc: undefined as ChildProcess | undefined },
  { name: `vol${process.pid}b`, address: '127.0.0.3', home: '', proc: undefined as ChildProcess | undefined },
];
const APP = 'notes';

// No dependencies: GET /note/<text> appends a line to the volume, GET /notes reads them all back.
const server = `const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const dir = process.env.PILOT_VOLUME_DATA;
const file = path.join(dir, 'notes.txt');
const s = http.createServer((req, res) => {
  const m = /^\\/note\\/([a-z0-9-]+)$/.exec(req.url);
  if (m) fs.appendFileSync(file, process.env.APP_VERSION + ':' + m[1] + '\\n');
  const notes = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\\n').filter(Boolean) : [];
  res.end(JSON.stringify({ version: process.env.APP_VERSION, dir, notes, pid: process.pid }));
});
s.listen(Number(process.env.PORT));
process.on('SIGTERM', () => s.close(() => process.exit(0)));
`;

const config = (version: string, extra = ''): string =>
  `name: ${APP}\nreplicas: 2\nvolumes:\n  - name: data\nenv:\n  APP_VERSION: ${version}\n${extra}`;

async function app(): Promise<any> {
  return (await h.apiCall('GET', `/api/v1/apps/${APP}`)).json;
}

async function get(path: string): Promise<any> {
  const r = await h.viaRouter(`${APP}.localhost`, path);
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

async function kill(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGKILL');
  await exited;
}

describe('volumes on the process runtime (pilot server, two agents, pilot run)', { timeout: 240_000 }, () => {
  let repo = '';
  let holder = nodes[0]!;
  let other = nodes[1]!;

  before(async () => {
    await h.startUp({}, 'server');
    for (const n of nodes) {
      n.home = h.track(tempDir(n.name));
      n.proc = await h.startAgent(n.name, n.address, n.home);
    }
    const dir = h.track(tempDir('vol-app'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: APP, scripts: { start: 'node server.js' } }));
    writeFileSync(join(dir, 'server.js'), server);
    writeFileSync(join(dir, 'pilot.yaml'), config('v1'));
    repo = h.track(await makeRepo(dir));
  });
  after(() => h.cleanup());

  it('places both replicas on one node, which then holds the volume; pilot status says so', async () => {
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const a = await app();
    const running = a.instances.filter((i: any) => i.desired === 'run');
    assert.equal(running.length, 2);
    assert.equal(new Set(running.map((i: any) => i.node)).size, 1, 'both replicas on one node');
    holder = nodes.find((n) => n.name === running[0].node)!;
    other = nodes.find((n) => n !== holder)!;
    assert.deepEqual(
      a.volumes.map((v: any) => [v.name, v.node, v.nodeStatus]),
      [['data', holder.name, 'ready']],
    );
    const st = await h.cli(['status', APP]);
    assert.match(st.stdout, new RegExp(`volume data on node ${holder.name}\\n`));
    const list = await h.cli(['volumes', APP]);
    assert.match(list.stdout, new RegExp(`data\\s+/data/data\\s+${holder.name}\\s+ready`));

    const wrote = await get('/note/one');
    assert.deepEqual(wrote.notes, ['v1:one']);
    // A folder of the agent's home on that node, readable by nobody else.
    const folder = join(holder.home, 'agent', 'volumes', APP, 'data');
    assert.equal(wrote.dir, folder);
    assert.equal(readFileSync(join(folder, 'notes.txt'), 'utf8'), 'v1:one\n');
    assert.equal(statSync(folder).mode & 0o777, 0o700);
    assert.ok(!existsSync(join(other.home, 'agent', 'volumes', APP)), 'nothing on the other node');
  });

  it('revision 2 reads what revision 1 wrote, on the same node; a killed instance finds it after its restart', async () => {
    writeFileSync(join(repo, 'pilot.yaml'), config('v2'));
    await git(repo, 'commit', '-qam', 'v2');
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const after2 = await get('/note/two');
    assert.equal(after2.version, 'v2');
    assert.deepEqual(after2.notes, ['v1:one', 'v2:two']);
    const live = (await app()).instances.filter((i: any) => i.desired === 'run');
    assert.ok(
      live.every((i: any) => i.node === holder.name && i.revision === 2),
      JSON.stringify(live),
    );

    const victim = live[0];
    process.kill(victim.pid, 'SIGKILL');
    await waitFor(
      'the killed instance restarted and ready',
      async () => {
        const i = (await app()).instances.find((x: any) => x.id === victim.id);
        return i && i.restarts >= 1 && i.state === 'ready' && i.pid !== victim.pid ? true : undefined;
      },
      60_000,
    );
    for (let k = 0; k < 4; k++) assert.deepEqual((await get('/notes')).notes, ['v1:one', 'v2:two']);
  });

  it("when the volume's node is down the app waits, with the reason, and does not start empty elsewhere; forget lets it", async () => {
    await kill(holder.proc);
    for (const pid of h.instancePids(join(holder.home))) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    const pending = await waitFor(
      "the app pending on its volume's node",
      async () => {
        const a = await app();
        return a.pending && /volume data of notes is on node/.test(a.pending.reason) ? a : undefined;
      },
      60_000,
    );
    assert.match(
      pending.pending.reason,
      new RegExp(
        `volume data of notes is on node ${holder.name}, which is not ready \\(down, draining or cordoned\\): the instances wait for it \\(\`pilot volumes forget notes\``,
      ),
    );
    assert.equal(pending.pending.count, 2);
    const st = await h.cli(['status', APP]);
    assert.match(st.stdout, new RegExp(`volume data on node ${holder.name} \\(down\\)`));
    assert.match(st.stdout, /pending: 2 instance\(s\) waiting: volume data of notes is on node/);
    // A few reconcile passes later: still nothing on the other node.
    await sleep(2000);
    assert.equal((await app()).instances.filter((i: any) => i.node === other.name).length, 0, 'never started empty on the other node');
    // A deploy meanwhile waits too, and its failure says why.
    writeFileSync(join(repo, 'pilot.yaml'), config('v3', 'deploy: { ready_timeout: 4s }\n'));
    await git(repo, 'commit', '-qam', 'v3');
    const v3 = await h.cli(['run', repo]);
    assert.notEqual(v3.code, 0);
    assert.match(
      v3.stdout + v3.stderr,
      new RegExp(
        `revision 3 was not ready within 4s: 2 instance\\(s\\) could not be placed: volume data of notes is on node ${holder.name}, which is not ready`,
      ),
    );
    assert.equal(
      (await app()).instances.filter((i: any) => i.node === other.name).length,
      0,
      'the new revision did not start empty elsewhere either',
    );

    const forget = await h.cli(['volumes', 'forget', APP]);
    assert.equal(forget.code, 0, forget.stderr);
    assert.match(forget.stdout, new RegExp(`forgot volume data on node ${holder.name}: the next instance of notes starts with it empty`));
    await waitFor(
      'two instances ready on the other node',
      async () => {
        const ready = (await app()).instances.filter((i: any) => i.node === other.name && i.state === 'ready' && i.desired === 'run');
        return ready.length === 2 || undefined;
      },
      60_000,
    );
    const fresh = await get('/notes');
    assert.deepEqual(fresh.notes, [], 'an empty volume on the new node');
    assert.equal(fresh.dir, join(other.home, 'agent', 'volumes', APP, 'data'));
    const a = await app();
    assert.equal(a.pending, null);
    assert.deepEqual(
      a.volumes.map((v: any) => [v.name, v.node]),
      [['data', other.name]],
    );
    // Unknown app and bad volume names get clear errors.
    const none = await h.cli(['volumes', 'forget', 'nosuchapp']);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /app "nosuchapp" not found/);
    const badName = await h.apiCall('DELETE', `/api/v1/apps/${APP}/volumes?name=${encodeURIComponent('../x')}`);
    assert.equal(badName.status, 400);
  });
});
