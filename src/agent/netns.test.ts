import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { blockAddresses, createNetns, deleteNetns, existingNetns, netnsPids, netnsSupport, readNetns, wrapArgv } from './netns.js';
import { isSameProcess, readStartTime } from '../os/proc.js';

describe('network namespace per instance', () => {
  it('maps a block to a /30 inside 10.213.0.0/16', () => {
    assert.deepEqual(blockAddresses(0), ['10.213.0.1', '10.213.0.2']);
    assert.deepEqual(blockAddresses(65), ['10.213.1.5', '10.213.1.6']);
    assert.deepEqual(blockAddresses(16383), ['10.213.255.253', '10.213.255.254']);
  });

  it('wraps argv with nsenter, never a shell', () => {
    assert.deepEqual(wrapArgv({ name: 'pilot-7' }, ['node', 'server.js'], '/usr/bin/nsenter'), [
      '/usr/bin/nsenter',
      '--net=/run/netns/pilot-7',
      '--',
      'node',
      'server.js',
    ]);
  });

  it('creates a namespace, kills a process that left the group, and removes it all (root)', async (t) => {
    const support = await netnsSupport();
    if (!support.available) return t.skip(`netns: ${support.error}`);
    const stateDir = mkdtempSync(join(tmpdir(), 'pilot-netns-'));
    const ns = await createNetns(stateDir);
    let pid: number | undefined;
    try {
      assert.deepEqual(readNetns(stateDir), ns);
      // A detached sleeper in its own session: a process group kill would miss it.
      const p = spawn(wrapArgv(ns, [])[0]!, [...wrapArgv(ns, ['setsid', 'sleep', '300']).slice(1)], { detached: true, stdio: 'ignore' });
      p.unref();
      pid = p.pid!;
      const start = readStartTime(pid)!;
      for (let i = 0; i < 50 && (await netnsPids(ns.name)).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok((await netnsPids(ns.name)).length > 0);
      await deleteNetns(stateDir);
      for (let i = 0; i < 50 && isSameProcess(pid, start); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(!isSameProcess(pid, start), 'the process inside was killed');
      assert.equal(readNetns(stateDir), undefined);
      assert.equal((await netnsPids(ns.name)).length, 0);
    } finally {
      await deleteNetns(stateDir).catch(() => undefined);
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('forgets a namespace deleted by hand, so the instance gets a new one (root)', async (t) => {
    const support = await netnsSupport();
    if (!support.available) return t.skip(`netns: ${support.error}`);
    const stateDir = mkdtempSync(join(tmpdir(), 'pilot-netns-'));
    try {
      const ns = await createNetns(stateDir);
      assert.deepEqual(await existingNetns(stateDir), ns);
      execFileSync('ip', ['netns', 'del', ns.name]);
      assert.equal(await existingNetns(stateDir), undefined);
      assert.equal(readNetns(stateDir), undefined);
    } finally {
      await deleteNetns(stateDir).catch(() => undefined);
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
