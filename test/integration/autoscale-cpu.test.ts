/**
 * The autoscaler on CPU (`targetCpu`): `pilot server` and one `pilot agent` on 127.0.0.2; an app
 * whose requests burn CPU scales up under a request loop on what the agent reports of each
 * instance's CPU (its running total in every sync), and back to min after the window once idle.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { allocatePort } from '../../src/os/ports.js';
import { git, Harness, makeRepo, ROOT, sleep, tempDir, waitFor } from './harness.js';

const h = new Harness();

async function app(): Promise<any> {
  return (await h.apiCall('GET', '/api/v1/apps/burn')).json;
}

describe('autoscaler on CPU: busy instances raise the count, idle ones lower it', { timeout: 420_000 }, () => {
  let stop = false;
  let loops: Promise<void>[] = [];
  const failures: string[] = [];

  before(async () => {
    const ports = { api: await allocatePort('127.0.0.1'), router: await allocatePort('127.0.0.1') };
    await h.startUp({}, 'server', ports);
    await h.startAgent('n1', '127.0.0.2', h.track(tempDir('n1')));
    const repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(
      join(repo, 'pilot.yaml'),
      'name: burn\nhealth:\n  path: /healthz\n  interval: 1s\nautoscale: { min: 1, max: 3, targetCpu: 25%, scaleDownWindow: 10s }\n',
    );
    // Every request spins the CPU for 40 ms.
    writeFileSync(
      join(repo, 'server.js'),
      `import { createServer } from 'node:http';
createServer((req, res) => {
  if (req.url !== '/healthz') { const end = Date.now() + 40; while (Date.now() < end); }
  res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok\\n');
}).listen(Number(process.env.PORT));
`,
    );
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-q', '-m', 'burn');
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
  after(async () => {
    stop = true;
    await Promise.all(loops);
    await h.cleanup();
  });

  it('scales up on the CPU the agent reports, and says so', async () => {
    assert.deepEqual((await app()).app.autoscale.target, { metric: 'cpu', value: 25 });
    loops = Array.from({ length: 3 }, async () => {
      while (!stop) {
        try {
          const res = await request(h.router + '/', { headers: { host: 'burn.localhost' }, headersTimeout: 30_000 });
          await res.body.text();
          if (res.statusCode !== 200) failures.push(String(res.statusCode));
        } catch (err) {
          failures.push(String(err));
        }
      }
    });
    const a = await waitFor('the count to grow past 1', async () => ((await app()).app.replicas > 1 ? await app() : undefined), 180_000);
    assert.ok(a.app.autoscale.current.load > 25, JSON.stringify(a.app.autoscale));
    assert.match(
      a.app.autoscale.lastChange.reason,
      // One busy instance is 50–100 % of a core: it wants 2–4, capped at max 3 (said so).
      /CPU [\d.]+ % per instance over 1 \(target 25 % CPU per instance\): wants [234] instances; up from 1 to (max )?[23]/,
    );
    assert.deepEqual(failures, []);
  });

  it('comes back to min once idle, after the window', async () => {
    stop = true;
    await Promise.all(loops);
    const t0 = Date.now();
    await waitFor('the count to come back to 1', async () => ((await app()).app.replicas === 1 ? true : undefined), 180_000);
    assert.ok(Date.now() - t0 >= 10_000, 'not before the 10 s window');
    await sleep(1000);
    const s = await h.cli(['status', 'burn']);
    assert.match(s.stdout, /autoscale: 1-3 replicas at 25 % CPU per instance/);
  });
});
