/**
 * A full disk is an ordinary error. $PILOT_HOME is a small tmpfs; after a first deploy it is
 * filled to the last byte. Then: API writes answer 507 disk_full (what is full, how much is
 * needed), never 500; a deploy fails with that message; logging drops lines instead of blocking
 * or dying; /healthz and `pilot status` report the low disk; the router keeps serving the app
 * deployed earlier; the server stays up. Once space is freed, the next deploy works and the log
 * says how many lines it dropped. Needs root (mount); CI runs it as root.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { request } from 'undici';
import { git, Harness, makeRepo, ROOT, sleep, waitFor } from '../integration/harness.js';

const root = process.getuid?.() === 0;
const h = new Harness();
let repo = '';
let mounted = false;
const filler = (): string => join(h.home, 'filler');

/** Write until the filesystem refuses (ENOSPC), big chunks first, then small ones. */
function fill(): number {
  const fd = openSync(filler(), 'a');
  let total = 0;
  try {
    for (const size of [1024 * 1024, 64 * 1024, 4096, 512, 1]) {
      const chunk = Buffer.alloc(size, 0x61);
      for (;;) {
        try {
          total += writeSync(fd, chunk);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return total;
}

async function health(): Promise<{
  ok: boolean;
  disk: { freeBytes: number; low: boolean; path: string };
  log?: { droppedLines: number; failing: string | null };
}> {
  const anonymous = await h.apiCall('GET', '/healthz', undefined, null);
  assert.equal(anonymous.status, 200);
  assert.deepEqual(Object.keys(anonymous.json.disk), ['low'], 'only the admin token sees paths and figures');
  const r = await h.apiCall('GET', '/healthz');
  assert.equal(r.status, 200);
  assert.equal(r.json.disk.low, anonymous.json.disk.low);
  return r.json;
}

async function commitChange(message: string): Promise<void> {
  writeFileSync(join(repo, 'CHANGE.txt'), `${message}\n`);
  await git(repo, 'add', '-A');
  await git(repo, 'commit', '-q', '-m', message);
}

describe('a full disk under $PILOT_HOME', { skip: root ? false : 'needs root to mount a tmpfs', timeout: 400_000 }, () => {
  before(async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=640m,mode=0700', 'tmpfs', h.home]);
    mounted = true;
    repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    await h.startUp({ PILOT_DISK_LOW_BYTES: String(16 * 1024 * 1024) });
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal((await h.viaRouter('hello.localhost')).status, 200);
  });
  after(async () => {
    // The first clean-up kills every process (removing the mount point itself fails: EBUSY);
    // after the unmount a second one removes the folders.
    await h.cleanup().catch(() => undefined);
    if (mounted) {
      try {
        execFileSync('umount', [h.home]);
      } catch {
        execFileSync('umount', ['-l', h.home]);
      }
    }
    await h.cleanup();
  });

  it('is reported, not fatal: 507 answers, a failed deploy that says why, the router and the server serving', async () => {
    assert.equal((await health()).disk.low, false);
    const filled = fill();
    assert.ok(filled > 10 * 1024 * 1024, `only ${filled} bytes to fill`);
    const hz = await health();
    assert.equal(hz.disk.low, true);
    assert.equal(hz.disk.path, h.home);

    // An artifact upload: 507 naming the artifacts folder's filesystem and the upload's size.
    const bytes = randomBytes(3 * 1024 * 1024);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const up = await request(`${h.api}/api/v1/artifacts/${digest}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${h.token}`, 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    const upBody = (await up.body.json()) as { error: { code: string; message: string; hint: string; details: { neededBytes: number } } };
    assert.equal(up.statusCode, 507, JSON.stringify(upBody));
    assert.equal(upBody.error.code, 'disk_full');
    assert.match(
      upBody.error.message,
      new RegExp(
        `cannot store artifact ${digest}: the filesystem holding ${h.home}/artifacts(/\\S+)? is full \\(ENOSPC, \\d+ bytes free\\); it needs ${bytes.length} bytes`,
      ),
    );
    assert.doesNotMatch(upBody.error.hint, /bug in Pilot/);
    assert.equal((await h.apiCall('HEAD', `/api/v1/artifacts/${digest}`)).status, 404, 'nothing half-stored');

    // A run log append, and other API writes: 507 or success, never 500.
    fill();
    const run = await h.apiCall('POST', '/api/v1/runs', { app: 'hello' });
    assert.ok([201, 507].includes(run.status), JSON.stringify(run.json));
    if (run.status === 201) {
      const log = await request(`${h.api}/api/v1/runs/${run.json.run.id}/log`, {
        method: 'POST',
        headers: { authorization: `Bearer ${h.token}`, 'content-type': 'text/plain' },
        body: 'x'.repeat(512 * 1024),
      });
      const text = await log.body.text();
      assert.equal(log.statusCode, 507, text);
      assert.match(text, /"code":"disk_full"/);
    }
    for (let i = 0; i < 20; i++) {
      const s = await h.apiCall('PUT', '/api/v1/apps/hello/secrets/S' + i, { value: 'v'.repeat(20_000) });
      assert.ok(s.status === 200 || s.status === 507, `secret write: ${s.status} ${JSON.stringify(s.json)}`);
      if (s.status === 507) assert.equal(s.json.error.code, 'disk_full');
    }

    // A deploy: fails, saying the disk is full (exit 1, not 70 "a bug"). Filled again first:
    // the failed writes above freed what they had taken.
    await commitChange('second');
    fill();
    const deploy = await h.cli(['run', repo]);
    assert.equal(deploy.code, 1, deploy.stdout + deploy.stderr);
    assert.match(
      deploy.stderr,
      /error: (cannot (store artifact sha256:[0-9a-f]+|write the database|write)|build step `[^`]+` cannot write): the filesystem holding \S+ is full \((ENOSPC|SQLITE_FULL), \d+ bytes free\)/,
    );
    assert.doesNotMatch(deploy.stderr, /bug in Pilot/);

    const status = await h.cli(['status', 'hello']);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stderr, /warning: the control plane's disk is low: \d+ MiB free under /);

    // Logging went on without the disk: lines dropped, counted, the event loop free. The deploy
    // above may have failed in its build step, on the machine that builds (the CLI here), before
    // the server wrote anything: a write refused now is logged (a warning per 507) and dropped.
    fill();
    for (let i = 0; i < 20; i++) {
      const s = await h.apiCall('PUT', '/api/v1/apps/hello/secrets/L' + i, { value: 'v'.repeat(20_000) });
      if (s.status === 507) break;
    }
    const after_ = await health();
    const dropped = await waitFor(
      'a log line dropped',
      async () => {
        const hz = await health();
        return (hz.log?.droppedLines ?? 0) > 0 ? hz : undefined;
      },
      15_000,
    ).catch(() => after_);
    assert.ok((dropped.log?.droppedLines ?? 0) > 0, JSON.stringify(dropped.log));
    for (let i = 0; i < 20; i++)
      assert.equal((await h.viaRouter('hello.localhost')).status, 200, 'the router serves the app deployed before');
    assert.equal(h.up?.exitCode, null, 'pilot up is still running');
  });

  it('recovers by itself once space is freed: the next deploy works and the log says what it dropped', async () => {
    rmSync(filler());
    await waitFor('healthz to see the space', async () => ((await health()).disk.low ? undefined : true));
    await waitFor('logging to resume', async () => ((await health()).log?.failing === null ? true : undefined), 30_000);
    await commitChange('third');
    const deploy = await h.cli(['run', repo]);
    assert.equal(deploy.code, 0, deploy.stdout + deploy.stderr);
    const head = (await git(repo, 'rev-parse', 'HEAD')).trim();
    await waitFor(
      'the new revision to serve',
      async () => {
        const r = await h.viaRouter('hello.localhost');
        return r.status === 200 && r.text.includes(head) ? true : undefined;
      },
      60_000,
    );
    await sleep(200);
    const log = readFileSync(join(h.home, 'logs', 'pilot.log'), 'utf8');
    assert.match(log, /log lines dropped: \d+ between \S+ and now \(ENOSPC: the disk was full or failing\)/);
    assert.equal(h.up?.exitCode, null);
  });
});
