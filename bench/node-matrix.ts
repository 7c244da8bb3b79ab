/**
 * Node.js major matrix (issue 10). For each major, one tiny app with a registry dependency (ms)
 * and `engines.node: "<major>.x"` goes through `pilot run` on a real `pilot up` (free ports): the
 * newest release of that major is resolved, fetched (once per machine: the shared test cache,
 * PILOT_RUNTIME_CACHE), an npm is paired by npm's own engines.node, the dependency is installed
 * with it and the app is started with `npm start` on the agent. Prints per major: deployed or
 * refused and why, node and npm versions, what the app answered, and the wall time of `pilot run`.
 *
 *   npm run build && node dist/bench/node-matrix.js [majors or exact versions…]
 *   default: 4 6 8 10 12 14 16 18 20 22 24, plus 4.0.0 (the old nested package layout)
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Harness, makeRepo, tempDir } from '../test/integration/harness.js';

const WANTED = process.argv.length > 2 ? process.argv.slice(2) : ['4', '6', '8', '10', '12', '14', '16', '18', '20', '22', '24', '4.0.0'];

const SERVER = `var http = require('http');
var ms = require('ms');
http.createServer(function (req, res) {
  res.end(JSON.stringify({ version: process.version, ua: process.env.npm_config_user_agent || null, twoHours: ms('2h') }));
}).listen(process.env.PORT);
`;

interface Row {
  readonly wanted: string;
  readonly outcome: string;
  readonly node: string;
  readonly npm: string;
  readonly answered: string;
  readonly seconds: string;
  /** pilot run's own split: build (runtime, npm, install), deploy (start to ready). */
  readonly split: string;
}

async function main(): Promise<void> {
  const h = new Harness();
  const rows: Row[] = [];
  try {
    await h.startUp();
    for (const w of WANTED) {
      const spec = w.includes('.') ? w : `${w}.x`;
      const name = `matrix-${w.replaceAll('.', '-')}`;
      const dir = h.track(tempDir(name));
      writeFileSync(
        join(dir, 'package.json'),
        JSON.stringify({
          name,
          version: '1.0.0',
          private: true,
          engines: { node: spec },
          dependencies: { ms: '2.1.3' },
          scripts: { prestart: 'node --version', start: 'node server.js' },
        }),
      );
      writeFileSync(join(dir, 'server.js'), SERVER);
      const repo = h.track(await makeRepo(dir));
      const t0 = performance.now();
      const r = await h.cli(['run', repo]);
      const seconds = ((performance.now() - t0) / 1000).toFixed(1);
      const out = r.stdout + r.stderr;
      const node = /\n {4}node (\S+) \(from /.exec(out)?.[1] ?? '-';
      const npm = /\n {4}npm (\S+) \(paired with node/.exec(out)?.[1] ?? '-';
      const eol = /warning: Node\.js \S+ reached its end of life on (\S+)/.exec(out)?.[1];
      const t = /timings: source \S+, build (\S+), package \S+, publish \S+, deploy (\S+)/.exec(out);
      const split = t ? `${t[1]} / ${t[2]}` : '-';
      if (r.code !== 0) {
        // The failure line, and the tool's own error (npm ERR! code …) when the step printed one.
        const why = [/!!! \w+ failed: (.*)/.exec(out)?.[1] ?? `exit code ${r.code}`, /npm ERR! code (\S+)/.exec(out)?.[1]]
          .filter(Boolean)
          .join(' ');
        rows.push({ wanted: spec, outcome: `refused: ${why.slice(0, 160)}`, node, npm, answered: '-', seconds, split });
        continue;
      }
      const res = await h.viaRouter(`${name}.localhost`);
      let answered = `HTTP ${res.status}`;
      try {
        const body = JSON.parse(res.text) as { version: string; ua: string | null; twoHours: number };
        answered = `${body.version}, ${(body.ua ?? 'no npm').split(' ').slice(0, 2).join(' ')}, ms('2h')=${body.twoHours}`;
      } catch {
        // not JSON: show the status only
      }
      rows.push({ wanted: spec, outcome: `deployed${eol ? ` (EOL since ${eol})` : ''}`, node, npm, answered, seconds, split });
      await h.cli(['scale', name, '0']); // keep the machine's load down for the next row
    }
  } finally {
    await h.cleanup();
  }
  const head: Row = {
    wanted: 'engines.node',
    outcome: 'outcome',
    node: 'node',
    npm: 'npm',
    answered: 'the app answered (process.version, npm_config_user_agent, dependency)',
    seconds: 'pilot run s',
    split: 'build / deploy',
  };
  const cols = Object.keys(head) as (keyof Row)[];
  const line = (r: Row): string => `| ${cols.map((c) => r[c]).join(' | ')} |`;
  console.log(line(head));
  console.log(`|${cols.map(() => '---').join('|')}|`);
  for (const r of rows) console.log(line(r));
}

await main();
