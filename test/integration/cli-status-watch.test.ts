/**
 * `pilot status APP --watch` redraws when the app's events arrive on the event stream, and `pilot
 * apps` / `pilot status` show the URL with the router's real port (a port the OS picked here).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { git, Harness, makeRepo, PILOT, ROOT, waitFor } from './harness.js';

const h = new Harness();
let repo = '';

before(async () => {
  await h.startUp();
  repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
  const run = await h.cli(['run', repo]);
  assert.equal(run.code, 0, run.stdout + run.stderr);
});
after(() => h.cleanup());

describe('pilot status --watch and the URL column', () => {
  it("shows the URL with the router's port", async () => {
    const port = new URL(h.router).port;
    assert.notEqual(port, '8080', 'the test router is on a port the OS picked');
    const apps = await h.cli(['apps']);
    assert.equal(apps.code, 0, apps.stderr);
    assert.match(apps.stdout, new RegExp(`http://hello\\.localhost:${port}`));
    const json = JSON.parse((await h.cli(['apps', '--json'])).stdout) as { apps: { url: string }[] };
    assert.equal(json.apps[0]!.url, `http://hello.localhost:${port}`);
    const status = await h.cli(['status', 'hello']);
    assert.match(status.stdout, new RegExp(`^url http://hello\\.localhost:${port}$`, 'm'));
    // The URL answers through that router.
    assert.equal((await h.viaRouter('hello.localhost')).status, 200);
    // Without a terminal: no colour codes in tables.
    assert.doesNotMatch(apps.stdout + status.stdout, /\x1b\[/);
  });

  it('pilot logs --json prints one document per line', async () => {
    const plain = await h.cli(['logs', 'hello']);
    const json = await h.cli(['logs', 'hello', '--json']);
    assert.equal(json.code, 0, json.stderr);
    const lines = json.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { line: string }).line);
    assert.deepEqual(lines, plain.stdout.replace(/\n$/, '').split('\n'));
  });

  it('redraws on events (no polling) and stops on Ctrl-C', async () => {
    const p = spawn(process.execPath, [PILOT, 'status', 'hello', '--watch'], {
      cwd: ROOT,
      env: h.env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    try {
      await waitFor('the first status', () => (/^--- \S+ {2}now$/m.test(out) && out.includes('1 replica(s)')) || undefined);
      const before = out.length;
      // Nothing happens: nothing is redrawn (the watch waits on the stream, it does not poll).
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(out.length, before, 'no redraw without an event');
      const scale = await h.cli(['scale', 'hello', '2']);
      assert.equal(scale.code, 0, scale.stderr);
      await waitFor('a redraw with 2 replicas', () => (out.slice(before).includes('2 replica(s)') ? true : undefined), 60_000);
      assert.match(out.slice(before), /^--- \S+ {2}\S/m, 'each refresh is headed by its time and the event that caused it');
      // The second instance comes up: more redraws follow, each a whole status.
      await waitFor('both instances ready', () => ((out.slice(before).match(/ ready /g) ?? []).length >= 2 ? true : undefined), 60_000);
    } finally {
      const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
      p.kill('SIGINT');
      const code = await exited;
      assert.equal(code, 0, err);
    }
  });

  it('--watch --json prints one document per refresh', async () => {
    const p = spawn(process.execPath, [PILOT, 'status', 'hello', '--watch', '--json'], {
      cwd: ROOT,
      env: h.env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor('the first document', () => (out.includes('\n') ? true : undefined));
      await h.cli(['scale', 'hello', '1']);
      await waitFor('a refresh', () => (out.trim().split('\n').length >= 2 ? true : undefined), 60_000);
      const docs = out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { reason: string; app: { name: string; replicas: number } });
      assert.equal(docs[0]!.reason, 'now');
      assert.ok(docs.every((d) => d.app.name === 'hello'));
      await waitFor('replicas 1', () => (out.includes('"replicas":1') ? true : undefined), 60_000);
    } finally {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGINT');
      await exited;
    }
  });
  it(
    'pilot run on a terminal shows a status line with the step under the log',
    { skip: existsSync('/usr/bin/script') ? false : 'no script(1)' },
    async () => {
      writeFileSync(join(repo, 'NOTE.md'), 'second revision\n');
      await git(repo, 'add', '-A');
      await git(repo, 'commit', '-qm', 'second');
      // script(1): stdout is a pseudo-terminal, as in a shell.
      const r = spawnSync('script', ['-qec', `${process.execPath} ${PILOT} run ${repo}`, '/dev/null'], {
        cwd: ROOT,
        env: { ...h.env(), TERM: 'xterm' },
        encoding: 'utf8',
        timeout: 300_000,
      });
      assert.equal(r.status, 0, r.stdout);
      assert.match(r.stdout, /==> build/);
      assert.match(r.stdout, /\r\x1b\[2K/, 'the status line is erased before each log line');
      assert.match(r.stdout, /[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] (source|build|package|publish|deploy)\S* \d+s/, 'spinner, step, seconds');
      assert.match(r.stdout, /timings: source/);
    },
  );
});
