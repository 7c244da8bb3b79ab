import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { containerVolumeEnv, dockerVolumeName, processVolumeDir, processVolumeEnv } from './volumes.js';

describe('volumes on a node', () => {
  it('process runtime: a 0700 folder per app volume under the agent home, named by $PILOT_VOLUME_<NAME>, kept as it is', () => {
    const home = mkdtempSync(join(tmpdir(), 'pilot-vol-'));
    try {
      const env = processVolumeEnv(home, 'shop', [
        { name: 'data', path: '/data' },
        { name: 'user-files', path: '/u' },
      ]);
      assert.deepEqual(env, {
        PILOT_VOLUME_DATA: join(home, 'volumes/shop/data'),
        PILOT_VOLUME_USER_FILES: join(home, 'volumes/shop/user-files'),
      });
      assert.equal(statSync(env.PILOT_VOLUME_DATA!).mode & 0o777, 0o700);
      writeFileSync(join(env.PILOT_VOLUME_DATA!, 'kept'), 'x');
      // The next instance (a new revision) gets the same folder, untouched.
      assert.deepEqual(processVolumeEnv(home, 'shop', [{ name: 'data', path: '/data' }]), {
        PILOT_VOLUME_DATA: processVolumeDir(home, 'shop', 'data'),
      });
      assert.equal(statSync(join(env.PILOT_VOLUME_DATA!, 'kept')).size, 1);
      assert.deepEqual(processVolumeEnv(home, 'shop', undefined), {});
      // The hook for a per-app uid: the folder is handed to it (here: our own ids, which any user may chown to).
      const me = { uid: process.getuid!(), gid: process.getgid!() };
      const owned = processVolumeEnv(home, 'blog', [{ name: 'data', path: '/data' }], me);
      assert.equal(statSync(owned.PILOT_VOLUME_DATA!).uid, me.uid);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('docker: a volume per node, app and name, with a name Docker accepts; the variable names the mount point', () => {
    assert.equal(dockerVolumeName('node-1', 'shop', 'data'), 'pilot.node-1.shop.data');
    assert.equal(dockerVolumeName('eu west/1', 'shop', 'data'), 'pilot.eu_west_1.shop.data');
    assert.match(dockerVolumeName('ü:x', 'a', 'b'), /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/);
    assert.deepEqual(containerVolumeEnv([{ name: 'data', path: '/data' }]), { PILOT_VOLUME_DATA: '/data' });
  });
});
