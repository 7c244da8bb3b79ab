import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupCpuSeconds, cgroupPaths, CpuUsage } from './cpu-usage.js';

describe('instance CPU use', () => {
  it('reads cgroup v2 and v1 paths from /proc/PID/cgroup', () => {
    assert.deepEqual(cgroupPaths('0::/pilot/web-1\n'), { v2: '/pilot/web-1' });
    assert.deepEqual(cgroupPaths('12:memory:/pilot/a\n4:cpu,cpuacct:/pilot/a\n1:name=systemd:/x\n0::/y'), {
      cpuacct: '/pilot/a',
      v2: '/y',
    });
    assert.deepEqual(cgroupPaths('garbage\n'), {});
  });

  it("reads the instance's own cgroup, never the agent's", (t) => {
    const root = mkdtempSync(join(tmpdir(), 'pilot-cpu-'));
    t.after(() => rmSync(root, { recursive: true, force: true }));
    mkdirSync(join(root, 'pilot/web-1'), { recursive: true });
    writeFileSync(join(root, 'pilot/web-1/cpu.stat'), 'usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n');
    mkdirSync(join(root, 'cpu,cpuacct/pilot/web-2'), { recursive: true });
    writeFileSync(join(root, 'cpu,cpuacct/pilot/web-2/cpuacct.usage'), '1500000000\n');
    const agent = '0::/system.slice/pilot.service\n';
    assert.equal(cgroupCpuSeconds('0::/pilot/web-1\n', agent, root), 2.5);
    assert.equal(cgroupCpuSeconds('4:cpu,cpuacct:/pilot/web-2\n', '4:cpu,cpuacct:/\n', root), 1.5);
    assert.equal(cgroupCpuSeconds(agent, agent, root), undefined, "the agent's own cgroup would charge the agent's CPU");
    assert.equal(cgroupCpuSeconds('0::/\n', agent, root), undefined, 'the root cgroup is the whole machine');
    assert.equal(cgroupCpuSeconds('0::/pilot/missing\n', agent, root), undefined);
  });

  it('measures a busy process tree from /proc when it has no cgroup of its own', async (t) => {
    // A parent that forks a child spinning on the CPU: both in one process group.
    const p = spawn(
      process.execPath,
      ['-e', "require('child_process').spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'inherit' }); setInterval(() => {}, 1000)"],
      { detached: true, stdio: 'ignore' },
    );
    t.after(() => {
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    });
    const meter = new CpuUsage(); // the child is in this process's cgroup, the "agent's": the /proc path
    const first = meter.measure([p.pid!]).get(p.pid!);
    assert.ok(first !== undefined);
    await new Promise((r) => setTimeout(r, 1500));
    const second = meter.measure([p.pid!]).get(p.pid!)!;
    // The spinning child used most of a core for 1.5 s (a loaded machine gives it less: a generous bound).
    assert.ok(second - first > 0.2, `${first} → ${second}`);
    assert.equal(meter.measure([999_999_999, -1]).size, 0, 'unknown pids are left out');
  });
});
