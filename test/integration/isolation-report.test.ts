/**
 * A node without full isolation says so: `pilot up` with app users and cgroups turned off (as a
 * non-root agent would be) logs one warning, `pilot nodes` shows what is missing and how to get it,
 * and a memory limit is still enforced, by RSS polling.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Harness, makeRepo, tempDir, waitFor } from './harness.js';

const h = new Harness();

describe('a node without full isolation', { timeout: 300_000 }, () => {
  before(() => h.startUp({ PILOT_APP_USERS: 'off', PILOT_CGROUPS: 'off' }));
  after(() => h.cleanup());

  it('warns once at start-up and in `pilot nodes`, saying what is missing and how to get it', async () => {
    const log = readFileSync(join(h.home, 'logs', 'pilot.log'), 'utf8');
    assert.equal(log.split('\n').filter((l) => l.includes('app isolation incomplete')).length, 1);
    const json = JSON.parse((await h.cli(['nodes', '--json'])).stdout);
    const iso = json.nodes[0].runtimes.process.isolation;
    assert.equal(iso.user, false);
    assert.equal(iso.cgroup, false);
    assert.match(iso.reason, /PILOT_APP_USERS=off[^]*PILOT_CGROUPS=off[^]*run the agent as root[^]*runtime: docker/);
    const text = (await h.cli(['nodes'])).stdout;
    assert.match(text, /ISOLATION/);
    assert.match(text, /\bnone\b/);
    assert.match(text, /^warning: node local: apps run as root/m);
    assert.equal(statSync(join(h.home, 'agent')).mode & 0o777, 0o700, 'no app uid needs to pass through: agent/ stays 0700');
  });

  it('still enforces resources.memory, by RSS polling, and says so in lastError', async () => {
    const dir = h.track(tempDir('src-leak'));
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({ name: 'leak', version: '1.0.0', private: true, type: 'module', scripts: { start: 'node server.js' } }),
    );
    writeFileSync(
      join(dir, 'package-lock.json'),
      JSON.stringify({
        name: 'leak',
        version: '1.0.0',
        lockfileVersion: 3,
        requires: true,
        packages: { '': { name: 'leak', version: '1.0.0' } },
      }),
    );
    writeFileSync(
      join(dir, 'server.js'),
      `import { createServer } from 'node:http';
const hog = [];
setTimeout(() => setInterval(() => hog.push(Buffer.alloc(8 << 20, 1)), 50), 1500);
createServer((q, s) => s.end('ok')).listen(Number(process.env.PORT));
`,
    );
    writeFileSync(join(dir, 'pilot.yaml'), 'name: leak\nresources:\n  memory: 64MB\n');
    await h.cli(['run', h.track(await makeRepo(dir))]); // may fail its rollout: the app never stays up
    const inst = await waitFor(
      'a restart after the RSS limit',
      async () =>
        ((await h.apiCall('GET', '/api/v1/apps/leak')).json.instances as { restarts: number; lastError?: string }[]).find(
          (i) => i.restarts >= 1 && /out of memory/.test(i.lastError ?? ''),
        ),
      120_000,
    );
    assert.match(inst.lastError!, /^killed: out of memory \(limit 64 MB\) \(measured by RSS polling\)/);
  });
});
