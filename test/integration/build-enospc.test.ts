/**
 * A build step whose output says ENOSPC: a full disk (disk_full, naming the fullest filesystem the
 * step writes to) only when that filesystem is low for real; otherwise the step's own failure, with
 * its lines (inotify's "System limit for number of file watchers reached" says ENOSPC too). The
 * really full disk is in test/faults/disk-full.test.ts; here "low" is a threshold above the free
 * space (PILOT_DISK_LOW_BYTES), in the process that runs the pipeline (`pilot run`).
 */
import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Harness, makeRepo, tempDir } from './harness.js';

describe('a build step that says ENOSPC', { timeout: 240_000 }, () => {
  const h = new Harness();
  let repo = '';
  before(async () => {
    await h.startUp();
    const dir = h.track(tempDir('enospc-app'));
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({ name: 'nospace', private: true, scripts: { build: 'node build.js', start: 'node server.js' } }),
    );
    writeFileSync(
      join(dir, 'package-lock.json'),
      JSON.stringify({ name: 'nospace', lockfileVersion: 3, requires: true, packages: { '': { name: 'nospace' } } }),
    );
    writeFileSync(
      join(dir, 'build.js'),
      "console.error('Error: ENOSPC: System limit for number of file watchers reached, watch \\'/app/src\\''); process.exit(1);\n",
    );
    writeFileSync(join(dir, 'server.js'), "require('node:http').createServer((q, s) => s.end('ok')).listen(process.env.PORT);\n");
    repo = h.track(await makeRepo(dir));
  });
  after(() => h.cleanup());

  it('is the step failing, with its own line, while the disk has room', async () => {
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /step `[^`]*build[^`]*` exited with code 1/);
    assert.match(r.stderr, /System limit for number of file watchers reached/);
    assert.doesNotMatch(r.stderr, /is full/);
  });

  it('is a full disk, naming the filesystem and its free space, when it is low', async () => {
    const r = await h.cli(['run', repo], { env: { PILOT_DISK_LOW_BYTES: String(2 ** 60) } });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /error: build step `build` cannot write: the filesystem holding \/\S+ is full \(ENOSPC, [^)]+ free\)/);
    assert.doesNotMatch(r.stderr, /bug in Pilot/);
  });
});
