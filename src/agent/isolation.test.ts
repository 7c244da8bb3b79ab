import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppUids, detectIsolation, pickUid, shareTree } from './isolation.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pilot-iso-unit-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const isRoot = process.getuid?.() === 0;

void describe('app uids', () => {
  void it('picks a uid in the range from a seeded start, skipping taken ones, and none when the range is full', () => {
    const a = pickUid('home\0web', [61000, 61009], () => false);
    assert.ok(a !== undefined && a >= 61000 && a <= 61009);
    assert.equal(
      pickUid('home\0web', [61000, 61009], () => false),
      a,
      'deterministic',
    );
    const b = pickUid('home\0web', [61000, 61009], (u) => u === a);
    assert.ok(b !== undefined && b !== a);
    assert.equal(
      pickUid('x', [61000, 61009], () => true),
      undefined,
    );
  });

  void it('gives each app its own uid (gid = uid), records it 0600, and the same one after a restart', async (t) => {
    const dir = await tempDir(t);
    const file = join(dir, 'uids.json');
    const env = { PILOT_APP_UID_RANGE: '62000-62999' };
    const uids = new AppUids(file, dir, env);
    const web = uids.identity('web');
    const api = uids.identity('api');
    assert.notEqual(web.uid, api.uid);
    assert.equal(web.gid, web.uid);
    assert.ok(web.uid >= 62000 && web.uid <= 62999);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const again = new AppUids(file, dir, env);
    assert.deepEqual(again.get('web'), web);
    assert.deepEqual(again.identity('api'), api);
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { web: web.uid, api: api.uid });
  });

  void it('never hands out a uid of /etc/passwd (root, nobody) even when the range says so', async (t) => {
    const dir = await tempDir(t);
    const uids = new AppUids(join(dir, 'uids.json'), dir, { PILOT_APP_UID_RANGE: '65534-65534' });
    // 65534 is "nobody" on Debian: the only uid in range is taken.
    if (readFileSync('/etc/passwd', 'utf8').includes(':65534:')) assert.throws(() => uids.identity('web'), /no free uid/);
    else assert.equal(uids.identity('web').uid, 65534);
  });

  void it('reports what is missing when not root, and how to get it', () => {
    const r = detectIsolation({}, false);
    assert.equal(r.user, false);
    assert.equal(r.report.cgroup, false);
    assert.match(r.report.reason ?? '', /not root[^]*run the agent as root[^]*runtime: docker/);
    const off = detectIsolation({ PILOT_APP_USERS: 'off', PILOT_CGROUPS: 'off' }, true);
    assert.equal(off.user, false);
    assert.match(off.report.reason ?? '', /PILOT_APP_USERS=off/);
  });
});

void describe('shareTree', { skip: isRoot ? false : 'needs root (chown)' }, () => {
  void it('makes a tree root-owned, folders 0755, files 0644 or 0755 when executable, nothing writable by others', async (t) => {
    const dir = await tempDir(t);
    mkdirSync(join(dir, 'bin'), { mode: 0o700 });
    writeFileSync(join(dir, 'bin', 'node'), '', { mode: 0o700 });
    writeFileSync(join(dir, 'server.js'), '', { mode: 0o666 });
    chownSync(join(dir, 'server.js'), 1000, 1000);
    symlinkSync('server.js', join(dir, 'link.js'));
    chmodSync(dir, 0o700);
    shareTree(dir);
    const mode = (p: string): string => (statSync(p).mode & 0o7777).toString(8);
    assert.equal(mode(dir), '755');
    assert.equal(mode(join(dir, 'bin')), '755');
    assert.equal(mode(join(dir, 'bin', 'node')), '755');
    assert.equal(mode(join(dir, 'server.js')), '644');
    assert.equal(statSync(join(dir, 'server.js')).uid, 0);
  });
});
