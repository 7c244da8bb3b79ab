import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupName, createInstanceCgroup, detectCgroups, keyedCount, parseInstanceCgroup, parseProcCgroup } from './cgroups.js';

async function fakeRoot(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pilot-cgroup-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

void describe('cgroups (pure parts and file layout, on a fake tree)', () => {
  void it('parses /proc/self/cgroup of a hybrid machine: v1 controllers by name, v2 under ""', () => {
    const m = parseProcCgroup('9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/\n');
    assert.equal(m.get('memory'), '/process_api/abc');
    assert.equal(m.get('cpu'), '/x');
    assert.equal(m.get('cpuacct'), '/x');
    assert.equal(m.get(''), '/');
  });

  void it('reads the oom_kill count of memory.events / memory.oom_control, 0 when missing', () => {
    assert.equal(keyedCount('oom_kill_disable 0\nunder_oom 0\noom_kill 3\n', 'oom_kill'), 3);
    assert.equal(keyedCount('low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n', 'oom_kill'), 2);
    assert.equal(keyedCount(undefined, 'oom_kill'), 0);
    assert.equal(keyedCount('oom_kill_disable 1\n', 'oom_kill'), 0, 'a longer key is not the key');
  });

  void it('names a folder with safe characters only', () => {
    assert.equal(cgroupName('web-1-abc', 'deadbeef'), 'web-1-abc-deadbeef');
    assert.equal(cgroupName('../../etc', 'x'), '.._.._etc-x');
  });

  void it('v2: writes memory.max, memory.swap.max = 0, cpu.max from the limits', async (t) => {
    const root = await fakeRoot(t);
    const base = join(root, 'pilot');
    mkdirSync(join(base, 'i-1'), { recursive: true });
    writeFileSync(join(base, 'i-1', 'memory.swap.max'), 'max');
    const cg = createInstanceCgroup({ kind: 'v2', base }, 'i-1', { memoryMb: 64, cpu: 0.5 });
    assert.ok(cg);
    assert.equal(readFileSync(join(base, 'i-1', 'memory.max'), 'utf8'), String(64 * 1024 * 1024));
    assert.equal(readFileSync(join(base, 'i-1', 'memory.swap.max'), 'utf8'), '0');
    assert.equal(readFileSync(join(base, 'i-1', 'cpu.max'), 'utf8'), '50000 100000');
    assert.deepEqual(cg.dirs, [join(base, 'i-1')]);
    assert.equal(cg.kill, join(base, 'i-1'));
    const none = createInstanceCgroup({ kind: 'v2', base }, 'i-2', {});
    assert.equal(readFileSync(join(base, 'i-2', 'memory.max'), 'utf8'), 'max');
    assert.equal(readFileSync(join(base, 'i-2', 'cpu.max'), 'utf8'), 'max 100000');
    assert.ok(none);
  });

  void it('v1: memory limit (and memsw where present), cfs quota, freezer and unified folders', async (t) => {
    const root = await fakeRoot(t);
    const [memory, cpu, freezer, pids, unified] = ['memory', 'cpu', 'freezer', 'pids', 'unified'].map((c) => join(root, c, 'pilot'));
    mkdirSync(join(memory!, 'i-1'), { recursive: true });
    writeFileSync(join(memory!, 'i-1', 'memory.memsw.limit_in_bytes'), '-1');
    mkdirSync(join(unified!, 'i-1'), { recursive: true });
    writeFileSync(join(unified!, 'i-1', 'cgroup.kill'), '');
    const cg = createInstanceCgroup({ kind: 'v1', memory: memory!, cpu, freezer, pids, unified }, 'i-1', {
      memoryMb: 128,
      cpu: 2,
      pids: 100,
    });
    assert.ok(cg);
    assert.equal(readFileSync(join(memory!, 'i-1', 'memory.limit_in_bytes'), 'utf8'), String(128 * 1024 * 1024));
    assert.equal(readFileSync(join(memory!, 'i-1', 'memory.memsw.limit_in_bytes'), 'utf8'), String(128 * 1024 * 1024));
    assert.equal(readFileSync(join(cpu!, 'i-1', 'cpu.cfs_quota_us'), 'utf8'), '200000');
    assert.equal(readFileSync(join(cpu!, 'i-1', 'cpu.cfs_period_us'), 'utf8'), '100000');
    assert.equal(readFileSync(join(pids!, 'i-1', 'pids.max'), 'utf8'), '100');
    assert.deepEqual(cg.dirs, [join(memory!, 'i-1'), join(cpu!, 'i-1'), join(pids!, 'i-1'), join(freezer!, 'i-1'), join(unified!, 'i-1')]);
    assert.equal(cg.kill, join(unified!, 'i-1'));
    assert.equal(cg.freezer, join(freezer!, 'i-1'));
  });

  void it('v1 without a cpu controller refuses resources.cpu rather than ignoring it', async (t) => {
    const root = await fakeRoot(t);
    assert.throws(() => createInstanceCgroup({ kind: 'v1', memory: join(root, 'm') }, 'i', { cpu: 1 }), /no cpu cgroup controller/);
  });

  void it('detects "none" with the reason when nothing is mounted, and honours PILOT_CGROUPS=off', async (t) => {
    const root = await fakeRoot(t);
    const none = detectCgroups(root, '0::/\n');
    assert.equal(none.kind, 'none');
    assert.match(none.kind === 'none' ? none.reason : '', /no memory cgroup controller/);
    process.env.PILOT_CGROUPS = 'off';
    t.after(() => delete process.env.PILOT_CGROUPS);
    const off = detectCgroups();
    assert.equal(off.kind, 'none');
  });

  void it('a recorded cgroup with a relative or odd path is refused (a pid file is never trusted to name a file to write)', () => {
    assert.equal(parseInstanceCgroup({ kind: 'v1', memory: 'relative', dirs: [] }), undefined);
    assert.equal(parseInstanceCgroup({ kind: 'v3', memory: '/a', dirs: ['/a'] }), undefined);
    assert.equal(parseInstanceCgroup({ kind: 'v2', memory: '/a', dirs: ['/a', 3] }), undefined);
    assert.ok(parseInstanceCgroup({ kind: 'v2', memory: '/a', dirs: ['/a'], kill: '/a' }));
  });
});
