import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkCommand, startArgv } from './containment.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pilot-contain-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

void describe('start wrapper argv', () => {
  void it('is the plain argv when there is nothing to join and no user to switch to', () => {
    assert.deepEqual(startArgv(['node', 'server.js'], [], undefined), ['node', 'server.js']);
  });

  void it('passes cgroup files and the command as positional parameters, never inside the script', () => {
    const argv = startArgv(['node', '$(rm -rf /)', '; echo'], ['/sys/fs/cgroup/memory/pilot/a/cgroup.procs'], { uid: 61001, gid: 61001 });
    assert.equal(argv[0], '/bin/sh');
    assert.equal(argv[1], '-c');
    assert.doesNotMatch(argv[2]!, /node|rm -rf|cgroup/, 'the script is constant');
    assert.deepEqual(argv.slice(3), [
      'pilot-start',
      '1',
      '/sys/fs/cgroup/memory/pilot/a/cgroup.procs',
      'setpriv',
      '--reuid=61001',
      '--regid=61001',
      '--clear-groups',
      '--no-new-privs',
      '--',
      'node',
      '$(rm -rf /)',
      '; echo',
    ]);
  });
});

void describe('checkCommand', () => {
  void it('finds a command on PATH or by relative path, and says ENOENT or EACCES like spawn does', async (t) => {
    const dir = await tempDir(t);
    mkdirSync(join(dir, 'bin'));
    writeFileSync(join(dir, 'bin', 'tool'), '#!/bin/sh\n', { mode: 0o755 });
    writeFileSync(join(dir, 'bin', 'private-tool'), '#!/bin/sh\n', { mode: 0o700 });
    writeFileSync(join(dir, 'data.txt'), '', { mode: 0o644 });
    chmodSync(dir, 0o755);
    const app = { uid: 61001, gid: 61001 };
    checkCommand('tool', `/nonexistent:${join(dir, 'bin')}`, dir, app);
    checkCommand('./bin/tool', '', dir, app);
    checkCommand('sh', '/usr/bin:/bin', dir, app);
    assert.throws(() => checkCommand('nope', join(dir, 'bin'), dir, app), { code: 'ENOENT' });
    assert.throws(() => checkCommand('./data.txt', '', dir, app), { code: 'EACCES' });
    assert.throws(() => checkCommand('private-tool', join(dir, 'bin'), dir, app), { code: 'EACCES' }, 'root-only executable');
  });
});
