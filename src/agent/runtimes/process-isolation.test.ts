/**
 * The process runtime's containment, with real processes (root only): the app's own uid, its
 * cgroup (memory limit, OOM report, kill of every descendant, found again after a restart), and
 * the fallbacks without cgroups (RSS polling, descendants by parent chain and marker).
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInstanceCgroup, detectCgroups, removeCgroup, sweepEmptyCgroups, type CgroupLayout } from '../cgroups.js';
import { readProcStat } from '../../os/proc.js';
import { readPidFile } from './pid-file.js';
import { ProcessRuntime } from './process-runtime.js';
import type { InstanceHandle, StartRequest } from './runtime.js';
import { killByPid, waitFor } from './test-support.js';

const isRoot = process.getuid?.() === 0;
const layout: CgroupLayout = isRoot ? detectCgroups() : { kind: 'none', reason: 'not root' };
const USER = { uid: 64999, gid: 64999 };

/**
 * Modes: serve; leak (allocates 8 MB every 20 ms); detach (a setsid grandchild that double-forks,
 * and a detached + unref'ed child; prints their pids). Prints its pid, uid, groups, "ready".
 */
const APP = `
import { spawn } from 'node:child_process';
const mode = process.argv[2] ?? 'serve';
console.log('id ' + JSON.stringify({ pid: process.pid, uid: process.getuid(), gid: process.getgid(), groups: process.getgroups() }));
if (mode === 'leak') { const hog = []; setInterval(() => hog.push(Buffer.alloc(8 << 20, 1)), 20); }
if (mode === 'detach') {
  const a = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)'], { detached: true, stdio: 'ignore' });
  a.unref();
  const b = spawn('setsid', ['sh', '-c', 'sleep 100000 & echo $!'], { stdio: ['ignore', 'pipe', 'ignore'] });
  b.stdout.on('data', (d) => console.log('kids ' + JSON.stringify([a.pid, Number(String(d).trim())])));
}
if (mode === 'forkbomb') {
  let ok = 0, failed = 0;
  for (let i = 0; i < 60; i++) {
    const c = spawn('sleep', ['100'], { stdio: 'ignore' });
    c.on('spawn', () => ok++);
    c.on('error', () => failed++);
  }
  setTimeout(() => console.log('forks ' + JSON.stringify({ ok, failed })), 2000);
}
console.log('ready');
setInterval(() => {}, 1 << 30);
`;

interface Setup {
  rt: ProcessRuntime;
  req: (id: string, mode: string, memoryMb?: number, cpu?: number) => StartRequest;
  started: InstanceHandle[];
}

async function setup(t: TestContext, cgroups: CgroupLayout, pidsMax?: number): Promise<Setup> {
  const root = await mkdtemp(join(tmpdir(), 'pilot-iso-'));
  chmodSync(root, 0o755); // the app uid reads its code here
  await writeFile(join(root, 'app.mjs'), APP, { mode: 0o644 });
  const rt = new ProcessRuntime({ cgroups, rssPollMs: 100, pidsMax });
  const started: InstanceHandle[] = [];
  t.after(async () => {
    for (const h of started) await rt.stop(h, 0).catch(() => undefined);
    for (const h of started) killByPid(h.pid, h.startTime);
    await rt.close();
    await rm(root, { recursive: true, force: true });
  });
  const req = (id: string, mode: string, memoryMb?: number, cpu?: number): StartRequest => ({
    instanceId: id,
    stateDir: join(root, 'state', id),
    cwd: root,
    argv: [process.execPath, join(root, 'app.mjs'), mode],
    env: { PATH: '/usr/bin:/bin', PILOT_INSTANCE: id },
    user: USER,
    limits: { memoryMb, cpu },
  });
  return { rt, req, started };
}

const out = (rt: ProcessRuntime, r: StartRequest): string => {
  try {
    return readFileSync(rt.logFiles(r.stateDir).stdout, 'utf8');
  } catch {
    return '';
  }
};
const alive = (pid: number, startTime: string): boolean => {
  const st = readProcStat(pid);
  return st !== undefined && st.startTime === startTime && st.state !== 'Z';
};

async function kids(rt: ProcessRuntime, r: StartRequest): Promise<{ pid: number; startTime: string }[]> {
  await waitFor(() => /kids \[/.test(out(rt, r)), 'the detached children', 20_000);
  const pids = JSON.parse(/kids (\[.*\])/.exec(out(rt, r))![1]!) as number[];
  return pids.map((pid) => ({ pid, startTime: readProcStat(pid)!.startTime }));
}

// v1 machines without a v2 cgroup.kill: the freezer path (freeze, kill every pid, thaw), and with
// neither, the read-and-kill loop.
const v1Freezer: CgroupLayout | undefined =
  layout.kind === 'v1' && layout.freezer !== undefined ? { ...layout, unified: undefined } : undefined;
const v1Plain: CgroupLayout | undefined = layout.kind === 'v1' ? { ...layout, unified: undefined, freezer: undefined } : undefined;
const variants: [string, CgroupLayout | undefined][] = [
  ['with cgroups', layout.kind === 'none' ? undefined : layout],
  ['with v1 cgroups, freezer instead of cgroup.kill', v1Freezer],
  ['with v1 cgroups, neither freezer nor cgroup.kill', v1Plain],
  ['without cgroups (fallbacks)', { kind: 'none', reason: 'test' }],
];
for (const [name, variant] of variants) {
  const cgroups: CgroupLayout = variant ?? { kind: 'none', reason: 'n/a' };
  const skip = !isRoot
    ? 'needs root'
    : variant === undefined
      ? `not on this machine (${layout.kind === 'none' ? layout.reason : layout.kind})`
      : false;
  void describe(`process runtime containment ${name}`, { skip, timeout: 120_000 }, () => {
    void it('runs the app as the given uid/gid with no supplementary groups; its log files stay root-only', async (t) => {
      const { rt, req, started } = await setup(t, cgroups);
      const r = req('who-1', 'serve', 256, 0.5);
      started.push(await rt.start(r));
      await waitFor(() => out(rt, r).includes('ready'), 'the app', 20_000);
      const id = JSON.parse(/id (\{.*\})/.exec(out(rt, r))![1]!) as { uid: number; gid: number; groups: number[] };
      assert.equal(id.uid, USER.uid);
      assert.equal(id.gid, USER.gid);
      assert.deepEqual(
        id.groups.filter((g) => g !== USER.gid),
        [],
      );
      const log = statSync(rt.logFiles(r.stateDir).stdout);
      assert.equal(log.uid, 0);
      assert.equal(log.mode & 0o777, 0o600);
      if (cgroups.kind !== 'none') {
        assert.match(readFileSync(`/proc/${started[0]!.pid}/cgroup`, 'utf8'), /who-1-/, 'in its own cgroup');
        const cg = readPidFile(r.stateDir)?.cgroup;
        assert.ok(cg);
        if (cg.kind === 'v1') {
          assert.equal(readFileSync(join(cg.memory, 'memory.limit_in_bytes'), 'utf8').trim(), String(256 * 1024 * 1024));
          assert.equal(readFileSync(join(cg.dirs[1]!, 'cpu.cfs_quota_us'), 'utf8').trim(), '50000');
        } else {
          assert.equal(readFileSync(join(cg.memory, 'memory.max'), 'utf8').trim(), String(256 * 1024 * 1024));
          assert.equal(readFileSync(join(cg.memory, 'cpu.max'), 'utf8').trim(), '50000 100000');
        }
        assert.ok(readFileSync(join(cg.memory, 'cgroup.procs'), 'utf8').split('\n').includes(String(started[0]!.pid)));
      }
    });

    void it('kills an app above its memory limit and reports "killed: out of memory (limit 64 MB)"', async (t) => {
      const { rt, req, started } = await setup(t, cgroups);
      const r = req('leak-1', 'leak', 64);
      const h = await rt.start(r);
      started.push(h);
      await waitFor(() => !rt.isRunning(h), 'the OOM kill', 60_000);
      const exit = rt.exitInfo(h);
      assert.equal(exit?.oomKilled, true, JSON.stringify(exit));
      assert.match(exit?.reason ?? '', /^killed: out of memory \(limit 64 MB\)/);
    });

    void it('stop leaves no process: detached child, setsid grandchild and its double-forked sleep', async (t) => {
      const { rt, req, started } = await setup(t, cgroups);
      const r = req('detach-1', 'detach');
      const h = await rt.start(r);
      started.push(h);
      const children = await kids(rt, r);
      t.after(() => children.forEach((c) => killByPid(c.pid, c.startTime)));
      assert.ok(children.every((c) => alive(c.pid, c.startTime)));
      assert.notEqual(readProcStat(children[1]!.pid)?.session, h.pid, 'the sleep left the session');
      await rt.stop(h, 1_000);
      for (const c of children) assert.equal(alive(c.pid, c.startTime), false, `pid ${c.pid} survived the stop`);
      assert.equal(alive(h.pid, h.startTime), false);
    });

    void it(
      'holds a fork bomb to its pids limit where the machine has the pids controller',
      { skip: cgroups.kind === 'none' || (cgroups.kind === 'v1' && cgroups.pids === undefined) ? 'no pids controller' : false },
      async (t) => {
        const { rt, req, started } = await setup(t, cgroups, 24);
        const r = req('bomb-1', 'forkbomb');
        const h = await rt.start(r);
        started.push(h);
        await waitFor(() => /forks \{/.test(out(rt, r)), 'the fork report', 30_000);
        const forks = JSON.parse(/forks (\{.*\})/.exec(out(rt, r))![1]!) as { ok: number; failed: number };
        assert.ok(forks.failed > 0 && forks.ok < 60, JSON.stringify(forks));
        await rt.stop(h, 0);
      },
    );

    void it('after an agent restart, a new runtime adopts the instance and its stop still reaches every descendant', async (t) => {
      const { rt, req, started } = await setup(t, cgroups);
      const r = req('adopt-1', 'detach');
      const h = await rt.start(r);
      started.push(h);
      const children = await kids(rt, r);
      t.after(() => children.forEach((c) => killByPid(c.pid, c.startTime)));
      const rt2 = new ProcessRuntime({ cgroups });
      t.after(() => rt2.close());
      const adopted = await rt2.adopt('adopt-1', r.stateDir);
      assert.deepEqual(adopted && { pid: adopted.pid, startTime: adopted.startTime }, { pid: h.pid, startTime: h.startTime });
      await rt2.stop(adopted!, 1_000);
      for (const c of children) assert.equal(alive(c.pid, c.startTime), false, `pid ${c.pid} survived the stop`);
    });
  });
}

void describe("sweepEmptyCgroups on this machine's cgroups", { skip: layout.kind === 'none' ? 'no cgroups' : false }, () => {
  void it('removes empty instance folders and keeps one with a process in it', async (t) => {
    // A base of this test's own, so nothing of another agent on the machine is touched.
    const mine: CgroupLayout =
      layout.kind === 'v2'
        ? { kind: 'v2', base: join(layout.base, `sweep-test-${process.pid}`) }
        : layout.kind === 'v1'
          ? { kind: 'v1', memory: join(layout.memory, `sweep-test-${process.pid}`) }
          : layout;
    const empty = createInstanceCgroup(mine, 'empty', {})!;
    const busy = createInstanceCgroup(mine, 'busy', {})!;
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    t.after(async () => {
      sleeper.kill('SIGKILL');
      await waitFor(() => removeCgroup(busy), 'the busy cgroup to empty', 5_000);
      rmdirSync(mine.kind === 'v2' ? mine.base : mine.kind === 'v1' ? mine.memory : '/nonexistent');
    });
    writeFileSync(join(busy.memory, 'cgroup.procs'), String(sleeper.pid));
    assert.equal(sweepEmptyCgroups(mine, 0), 1);
    assert.equal(existsSync(empty.memory), false);
    assert.equal(existsSync(busy.memory), true);
    assert.equal(sweepEmptyCgroups(mine, 3_600_000), 0, 'nothing young is touched');
  });
});
