/**
 * Faults around the release phase and fixed-port namespaces: pilot up SIGKILLed while a release
 * phase runs (it must not run twice, and the deploy completes after the restart), and a hostile
 * fixed-port app whose child leaves its process group (it must not outlive the instance's stop).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { git, Harness, makeRepo, PILOT, ROOT, tempDir, waitFor } from '../integration/harness.js';
import { netnsSupport } from '../../src/agent/netns.js';

const h = new Harness();
const listNetns = (): string[] =>
  execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith('pilot-'));
const netnsBefore = new Set<string>();

async function repoOf(files: Record<string, string>): Promise<string> {
  const dir = h.track(tempDir('app'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return h.track(await makeRepo(dir));
}

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';

describe('faults: release phase and fixed-port namespaces', { timeout: 300_000 }, () => {
  before(async () => {
    if ((await netnsSupport()).available) for (const n of listNetns()) netnsBefore.add(n);
    await h.startUp({ PILOT_CACHE_GC_INTERVAL: '0' });
  });
  after(async () => {
    await h.cleanup();
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

  it('pilot up SIGKILLed during a release phase: the phase runs once, and the deploy completes after the restart (phase still running, or ended meanwhile)', async () => {
    const markers = h.track(tempDir('markers'));
    chmodSync(markers, 0o1777); // the release runs as the app's own uid when Pilot is root
    const release = (v: number): string => `import { appendFileSync } from 'node:fs';
appendFileSync(process.env.MARKER_DIR + '/runs.log', process.env.PILOT_REVISION + '\\n');
console.log('release v${v}: migrating');
setTimeout(() => console.log('release v${v}: done'), ${v === 1 ? 0 : v === 2 ? 6000 : 1000});
`;
    const repo = await repoOf({
      'pilot.yaml': `name: relkill\nrun: node server.js\nrelease: node release.js\nenv:\n  MARKER_DIR: ${markers}\n`,
      'release.js': release(1),
      'server.js': `import { createServer } from 'node:http';\ncreateServer((q, s) => s.end(process.env.PILOT_REVISION)).listen(Number(process.env.PORT));\n`,
    });
    assert.equal((await h.cli(['run', repo])).code, 0);
    // v2: restarted while its release phase still runs (adopted, watched to its end).
    // v3: restarted after its release phase ended (its recorded exit code says how).
    for (const [v, downMs] of [
      [2, 0],
      [3, 3000],
    ] as const) {
      writeFileSync(join(repo, 'release.js'), release(v));
      await git(repo, 'commit', '-qam', `release v${v}`);
      // pilot run in the background; pilot up dies under it while the release phase runs.
      const run = spawn(process.execPath, [PILOT, 'run', repo], { cwd: ROOT, env: h.env(), stdio: 'ignore' });
      const runExit = new Promise((r) => run.once('exit', r));
      try {
        await waitFor(
          `the release phase of revision ${v} to start`,
          () => (readFileSync(join(markers, 'runs.log'), 'utf8').includes(`${v}\n`) ? true : undefined),
          60_000,
        );
        await h.killUp();
        await new Promise((r) => setTimeout(r, downMs));
        await h.startUp({ PILOT_CACHE_GC_INTERVAL: '0' });
        await waitFor(
          `revision ${v} to serve`,
          async () => ((await h.viaRouter('relkill.localhost')).text === String(v) ? true : undefined),
          60_000,
        );
      } finally {
        run.kill('SIGKILL');
        await runExit;
      }
      const app = (await h.apiCall('GET', '/api/v1/apps/relkill')).json;
      assert.equal(app.rollouts[0].status, 'succeeded', JSON.stringify(app.rollouts[0]));
    }
    const ranLog = readFileSync(join(markers, 'runs.log'), 'utf8');
    // DEBUG_APPWORDS=1: on a failure, what pilot up said about this app (who started which release).
    if (ranLog !== '1\n2\n3\n' && process.env.DEBUG_APPWORDS)
      console.log(
        readFileSync(join(h.home, 'logs', 'pilot.log'), 'utf8')
          .split('\n')
          .filter((l) => /relkill/.test(l))
          .join('\n'),
      );
    assert.equal(ranLog, '1\n2\n3\n', 'each release phase ran once');
  });

  it("a fixed-port app's child that left its process group dies with the instance (root: own namespace)", async (t) => {
    const support = await netnsSupport();
    if (!support.available) return t.skip(`netns: ${support.error}`);
    const markers = h.track(tempDir('markers'));
    chmodSync(markers, 0o1777); // the release runs as the app's own uid when Pilot is root
    const server = (v: number): string => `import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
// detached = setsid(): its own session and process group, out of reach of a group kill.
const child = spawn('sleep', ['300'], { detached: true, stdio: 'ignore' });
child.unref();
writeFileSync(process.env.MARKER_DIR + '/child-${v}', String(child.pid));
createServer((q, s) => s.end('v${v}')).listen(3000);
`;
    const repo = await repoOf({
      'pilot.yaml': `name: escaper\nrun: node server.js\nport: 3000\nenv:\n  MARKER_DIR: ${markers}\n`,
      'server.js': server(1),
    });
    assert.equal((await h.cli(['run', repo])).code, 0);
    const child1 = Number(readFileSync(join(markers, 'child-1'), 'utf8'));
    assert.ok(alive(child1));
    writeFileSync(join(repo, 'server.js'), server(2));
    await git(repo, 'commit', '-qam', 'v2');
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    await waitFor("the old instance's escaped child to be killed", () => (alive(child1) ? undefined : true), 30_000);
    assert.ok(alive(Number(readFileSync(join(markers, 'child-2'), 'utf8'))), "the new instance's child runs");
    assert.equal((await h.cli(['scale', 'escaper', '0'])).code, 0);
    const child2 = Number(readFileSync(join(markers, 'child-2'), 'utf8'));
    await waitFor("the new instance's escaped child to be killed on scale 0", () => (alive(child2) ? undefined : true), 30_000);
  });
});
