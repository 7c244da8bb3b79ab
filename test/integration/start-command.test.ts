/**
 * An app with nothing to start it (public samples such as the Nuxt starter or Docker's
 * getting-started app have no "start" script) fails `pilot run` in its build step, naming what is
 * missing, before anything is installed or deployed; npm's own default (`node server.js`) still works.
 * An app that ignores $PORT (the hapi lesson listens on localhost:8000) fails its deploy saying
 * where it listens instead.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { git, Harness, makeRepo, ROOT } from './harness.js';

const h = new Harness();

describe('an app with nothing to start', { timeout: 300_000 }, () => {
  before(async () => {
    await h.startUp();
  });
  after(() => h.cleanup());

  it('fails at build with what is missing and how to fix it; no revision is made', async () => {
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    const pkgFile = join(repo, 'package.json');
    const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { name: string; scripts: Record<string, string> };
    pkg.name = 'nostart';
    pkg.scripts = { dev: 'node app.js', test: 'node --test' };
    writeFileSync(pkgFile, JSON.stringify(pkg, null, 2));
    await git(repo, 'mv', 'server.js', 'app.js');
    rmSync(join(repo, 'pilot.yaml'));
    await git(repo, 'commit', '-qam', 'no start script');
    const r = await h.cli(['run', repo]);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(
      r.stdout,
      /!!! build failed: nothing to start the app with: package\.json has no "start" script, there is no Procfile `web:` line and no server\.js \(package\.json has "dev"\)/,
    );
    assert.match(r.stderr, /hint: Add a "start" script to package\.json/);
    assert.doesNotMatch(r.stdout, /--> install/, 'refused before installing anything');
    const apps = await h.apiCall('GET', '/api/v1/apps/nostart');
    assert.ok(apps.status === 404 || apps.json.app?.activeRevision === null, JSON.stringify(apps.json));
  });

  it("still deploys an app that relies on npm's default start, server.js", async () => {
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    const pkgFile = join(repo, 'package.json');
    const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { name: string; scripts: Record<string, string> };
    pkg.name = 'npmdefault';
    pkg.scripts = {};
    writeFileSync(pkgFile, JSON.stringify(pkg, null, 2));
    rmSync(join(repo, 'pilot.yaml'));
    await git(repo, 'commit', '-qam', 'npm default start');
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const res = await h.viaRouter('npmdefault.localhost');
    assert.equal(res.status, 200, res.text);
  });

  it('says where an app that ignores $PORT listens instead', async () => {
    const fixed = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    const server = join(repo, 'server.js');
    writeFileSync(server, readFileSync(server, 'utf8').replace('server.listen(port, () =>', `server.listen(${fixed}, '127.0.0.1', () =>`));
    writeFileSync(join(repo, 'pilot.yaml'), 'name: ignoresport\ndeploy: { ready_timeout: 6s }\n');
    await git(repo, 'commit', '-qam', 'listen on a fixed port');
    const r = await h.cli(['run', repo]);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(
      r.stdout,
      new RegExp(
        `!!! deploy failed: .*health check GET / failed: connection refused \\(the app listens on 127\\.0\\.0\\.1:${fixed}, not on PORT=\\d+: make it listen on process\\.env\\.PORT\\)`,
      ),
    );
  });
});
