import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isPilotError } from '../../core/errors.js';
import { isSameProcess, readProcStat, readStartTime } from '../../os/proc.js';
import { ProcessRuntime } from './process-runtime.js';
import type { InstanceHandle, StartRequest } from './runtime.js';
import { runtimeContract } from './runtime.contract.js';
import { killByPid, makeAppDir, waitFor, type AppDir } from './test-support.js';

const ENV = { PATH: '/usr/local/bin:/usr/bin:/bin', PORT: '4100', APP_MODE: 'test' };

function request(dir: AppDir, instanceId: string, mode = 'serve'): StartRequest {
  return { instanceId, stateDir: join(dir.root, 'state', instanceId), cwd: dir.root, argv: [process.execPath, dir.app, mode], env: ENV };
}

runtimeContract('process', async () => {
  const dir = await makeAppDir();
  return {
    makeRuntime: () => new ProcessRuntime(),
    request: (id) => request(dir, id),
    missingCommand: (id) => ({ ...request(dir, id), argv: ['pilot-no-such-command', '--flag'] }),
    crash: (h) => killByPid(h.pid, h.startTime),
    hasRecord: (stateDir) => existsSync(join(stateDir, 'pid.json')),
    cleanup: () => dir.remove(),
  };
});

/** A temp app dir and a runtime; every instance started through `start` is killed after the test. */
async function setup(t: TestContext): Promise<{ dir: AppDir; rt: ProcessRuntime; start: (req: StartRequest) => Promise<InstanceHandle> }> {
  const dir = await makeAppDir();
  t.after(() => dir.remove());
  const rt = new ProcessRuntime();
  const start = async (req: StartRequest): Promise<InstanceHandle> => {
    const h = await rt.start(req);
    t.after(() => killByPid(h.pid, h.startTime));
    return h;
  };
  return { dir, rt, start };
}

const stdoutOf = (rt: ProcessRuntime, req: StartRequest): string => {
  try {
    return readFileSync(rt.logFiles(req.stateDir).stdout, 'utf8');
  } catch {
    return '';
  }
};

/** Pids the app printed ("pid N" lines) other than `except`, with their start times. */
function otherPids(out: string, except: number): { pid: number; startTime: string }[] {
  return [...out.matchAll(/^pid (\d+)$/gm)]
    .map((m) => Number(m[1]))
    .filter((pid) => pid !== except)
    .map((pid) => ({ pid, startTime: readStartTime(pid) ?? 'gone' }));
}

void describe('process runtime', () => {
  void it("gives the instance exactly the env it was passed, nothing of the agent's", async (t) => {
    process.env.PILOT_SECRET_X = 'agent-secret';
    t.after(() => delete process.env.PILOT_SECRET_X);
    const { dir, rt, start } = await setup(t);
    const req = request(dir, 'env-1');
    await start(req);
    await waitFor(() => stdoutOf(rt, req).includes('ready'), 'the app to print its env');
    const line = stdoutOf(rt, req)
      .split('\n')
      .find((l) => l.startsWith('env '));
    assert.ok(line !== undefined);
    const seen = JSON.parse(line.slice(4)) as Record<string, string>;
    assert.equal(seen.PILOT_SECRET_X, undefined);
    assert.deepEqual(seen, ENV);
  });

  void it('runs detached in its own process group, stdin /dev/null, output through the log writer appended to files', async (t) => {
    const { dir, rt, start } = await setup(t);
    const req = request(dir, 'logs-1');
    const h = await start(req);
    const logs = rt.logFiles(req.stateDir);
    assert.equal(readProcStat(h.pid)?.pgrp, h.pid);
    assert.equal(readlinkSync(`/proc/${h.pid}/fd/0`), '/dev/null');
    // The log writer's pipes (socket pairs), not the files and never the agent's own pipes.
    assert.match(readlinkSync(`/proc/${h.pid}/fd/1`), /^socket:/);
    assert.match(readlinkSync(`/proc/${h.pid}/fd/2`), /^socket:/);
    assert.equal(statSync(logs.stdout).mode & 0o777, 0o600);
    await waitFor(() => stdoutOf(rt, req).includes('ready'), 'first run output');
    await rt.stop(h, 2_000);
    const h2 = await start(req);
    await waitFor(() => stdoutOf(rt, req).split('ready').length === 3, 'second run output');
    assert.match(stdoutOf(rt, req), new RegExp(`^pid ${h.pid}\\n[^]*\\npid ${h2.pid}\\n`));
    assert.equal((await readFile(logs.stderr, 'utf8')).match(/hello on stderr/g)?.length, 2);
  });

  void it('stop kills the grandchild too (sh -c "node app; echo" forks, as npm start does)', async (t) => {
    const { dir, rt, start } = await setup(t);
    const base = request(dir, 'tree-1');
    const req = { ...base, argv: ['/bin/sh', '-c', `"${process.execPath}" "${dir.app}" serve; echo after`] };
    const h = await start(req);
    await waitFor(() => stdoutOf(rt, req).includes('ready'), 'the node grandchild');
    const [grandchild] = otherPids(stdoutOf(rt, req), h.pid);
    assert.ok(grandchild !== undefined, 'sh forked node');
    t.after(() => killByPid(grandchild.pid, grandchild.startTime));
    assert.equal(isSameProcess(grandchild.pid, grandchild.startTime), true);
    await rt.stop(h, 2_000);
    assert.equal(isSameProcess(grandchild.pid, grandchild.startTime), false);
    assert.equal(rt.isRunning(h), false);
  });

  void it('SIGKILLs a SIGTERM-ignoring instance after the grace period', async (t) => {
    const { dir, rt, start } = await setup(t);
    const req = request(dir, 'stubborn-1', 'ignore-term');
    const h = await start(req);
    await waitFor(() => stdoutOf(rt, req).includes('ready'), 'the SIGTERM handler');
    const t0 = performance.now();
    await rt.stop(h, 300);
    assert.ok(performance.now() - t0 >= 290, 'waited for the grace period');
    assert.equal(rt.isRunning(h), false);
    assert.match(stdoutOf(rt, req), /ignored SIGTERM/, 'SIGTERM came first');
    assert.deepEqual(rt.exitInfo(h), { code: null, signal: 'SIGKILL' });
    assert.equal(existsSync(join(req.stateDir, 'pid.json')), false);
  });

  void it('waits for a SIGTERM-ignoring grandchild after the leader died, then SIGKILLs it', async (t) => {
    const { dir, rt, start } = await setup(t);
    const req = request(dir, 'tree-2', 'parent');
    const h = await start(req);
    await waitFor(() => stdoutOf(rt, req).includes('ready'), 'the child to trap SIGTERM');
    const [child] = otherPids(stdoutOf(rt, req), h.pid);
    assert.ok(child !== undefined);
    t.after(() => killByPid(child.pid, child.startTime));
    await rt.stop(h, 300);
    assert.equal(isSameProcess(child.pid, child.startTime), false, 'the grandchild is gone when stop resolves');
    assert.match(stdoutOf(rt, req), /ignored SIGTERM/);
    assert.deepEqual(rt.exitInfo(h), { code: null, signal: 'SIGTERM' }, 'the leader itself obeyed SIGTERM');
  });

  void it('keeps its own dead child "running" until reaped, so exitInfo is set once isRunning is false', async (t) => {
    const { dir, rt, start } = await setup(t);
    const h = await start(request(dir, 'zombie-1'));
    process.kill(h.pid, 'SIGKILL');
    // Spin without yielding: Node cannot reap the child meanwhile, so it must turn into a zombie.
    const end = performance.now() + 2_000;
    while (readProcStat(h.pid)?.state !== 'Z' && performance.now() < end);
    assert.equal(readProcStat(h.pid)?.state, 'Z');
    assert.equal(isSameProcess(h.pid, h.startTime), false, 'a zombie is not the same live process');
    assert.equal(rt.isRunning(h), true, 'not reaped yet, so no exit info yet either');
    assert.equal(rt.exitInfo(h), undefined);
    await waitFor(() => !rt.isRunning(h), 'Node to reap the child');
    assert.deepEqual(rt.exitInfo(h), { code: null, signal: 'SIGKILL' });
  });

  void it('rejects a command that is not executable with deploy_failed', async (t) => {
    const { dir, rt } = await setup(t);
    const script = join(dir.root, 'run.sh');
    await writeFile(script, '#!/bin/sh\necho hi\n');
    await chmod(script, 0o644);
    const req = { ...request(dir, 'noexec-1'), argv: [script] };
    await assert.rejects(rt.start(req), (e: unknown) => {
      assert.ok(isPilotError(e) && e.code === 'deploy_failed');
      assert.match(e.message, /run\.sh: permission denied/);
      return true;
    });
  });

  void it('rejects a missing working directory with deploy_failed naming it', async (t) => {
    const { dir, rt } = await setup(t);
    const req = { ...request(dir, 'nocwd-1'), cwd: join(dir.root, 'no-such-release') };
    await assert.rejects(
      rt.start(req),
      (e: unknown) => isPilotError(e) && e.code === 'deploy_failed' && e.message.includes('no-such-release'),
    );
  });
});
