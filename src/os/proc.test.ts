import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isSameProcess, liveGroupMembers, parseProcStat, readProcStat, readStartTime } from './proc.js';
import { killByPid, waitFor } from '../agent/runtimes/test-support.js';

/** Spawn `node -e code`, detached, and SIGKILL it (and its group) after the test. */
function node(t: TestContext, code: string): number {
  const child = spawn(process.execPath, ['-e', code], { stdio: 'ignore', detached: true });
  const pid = child.pid;
  assert.ok(pid !== undefined);
  t.after(() => killByPid(pid));
  return pid;
}

void describe('parseProcStat', () => {
  void it('counts fields from the last ")" so a comm with spaces and parentheses cannot shift them', () => {
    const tail = 'S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615';
    assert.deepEqual(parseProcStat(`4242 (evil) S 1 (x y)) ${tail}\n`), {
      state: 'S',
      ppid: 1,
      pgrp: 4242,
      session: 4242,
      startTime: '987654',
      rssPages: 10,
    });
    assert.deepEqual(parseProcStat(`4242 (node) ${tail}`), {
      state: 'S',
      ppid: 1,
      pgrp: 4242,
      session: 4242,
      startTime: '987654',
      rssPages: 10,
    });
  });

  void it('rejects text that is not a stat line', () => {
    assert.equal(parseProcStat(''), undefined);
    assert.equal(parseProcStat('4242 (node) S 1 2'), undefined);
  });
});

void describe('proc', () => {
  void it('reads the start time of a live process whose name holds spaces and parentheses', async (t) => {
    // process.title sets the kernel's comm (prctl PR_SET_NAME) on Linux.
    const pid = node(t, "process.title = 'a) b (c'; setInterval(() => {}, 1e6)");
    await waitFor(() => readFileSync(`/proc/${pid}/stat`, 'utf8').includes('(a) b (c)'), 'the new comm');
    const raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const naive = raw.split(' ')[21]; // what a split on spaces would take for field 22
    const startTime = readStartTime(pid);
    assert.match(startTime ?? '', /^\d+$/);
    assert.notEqual(naive, startTime, 'the comm shifts naive splitting');
    assert.equal(readProcStat(pid)?.pgrp, pid, 'detached: its own group');
    assert.equal(isSameProcess(pid, startTime!), true);
  });

  void it('tells a different start time (a reused pid) from the same process', () => {
    const own = readStartTime(process.pid)!;
    assert.equal(isSameProcess(process.pid, own), true);
    assert.equal(isSameProcess(process.pid, String(Number(own) + 1)), false);
  });

  void it('answers no for pids that are not processes', () => {
    for (const pid of [0, -1, 1.5, Number.NaN, 2 ** 31 - 1]) {
      assert.equal(readStartTime(pid), undefined, String(pid));
      assert.equal(isSameProcess(pid, '1'), false, String(pid));
    }
  });

  void it('treats a zombie as dead', async (t) => {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e6)'], { stdio: 'ignore' });
    const pid = child.pid!;
    t.after(() => killByPid(pid));
    const startTime = readStartTime(pid)!;
    child.kill('SIGKILL');
    // Spin without yielding to the event loop: Node cannot reap it, so it stays a zombie.
    const end = performance.now() + 2_000;
    while (readProcStat(pid)?.state !== 'Z' && performance.now() < end);
    assert.equal(readProcStat(pid)?.state, 'Z');
    assert.equal(readStartTime(pid), startTime, 'its stat is still there');
    assert.equal(isSameProcess(pid, startTime), false);
  });

  void it('lists the live members of a process group, grandchildren included', async (t) => {
    const leader = node(
      t,
      "require('child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e6)'], { stdio: 'ignore' }); setInterval(() => {}, 1e6)",
    );
    await waitFor(() => liveGroupMembers(leader).length === 2, 'the leader and its child');
    assert.ok(liveGroupMembers(leader).includes(leader));
    const ownGroup = liveGroupMembers(readProcStat(process.pid)!.pgrp);
    assert.ok(ownGroup.includes(process.pid) && !ownGroup.includes(leader), 'detached: not in our group');
    killByPid(leader);
    await waitFor(() => liveGroupMembers(leader).length === 0, 'the group to be empty');
  });
});

void describe('instanceTree', () => {
  void it('finds the group, the session and every descendant by parent chain, not a stranger', async () => {
    const { instanceTree } = await import('./proc.js');
    const st = (ppid: number, pgrp: number, session: number, state = 'S') => ({ state, ppid, pgrp, session, startTime: '1', rssPages: 0 });
    const stats = new Map([
      [100, st(1, 100, 100)], // leader
      [101, st(100, 100, 100)], // same group
      [102, st(101, 102, 102)], // own session (setsid), child of 101
      [103, st(102, 103, 102)], // its own group, same new session, found by parent chain
      [200, st(1, 200, 200)], // stranger
      [104, st(100, 100, 100, 'Z')], // zombie: gone
    ]);
    assert.deepEqual(instanceTree(100, stats).sort(), [100, 101, 102, 103]);
  });
});
