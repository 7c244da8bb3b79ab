#!/usr/bin/env node
// Deploy apps nobody here wrote, unmodified, through a real `pilot up` + `pilot run`, and tabulate
// what happened. Third-party code is never in this repo: the apps are folders given as arguments
// (git work trees, or folders inside one).
//
//   node scripts/try-public-apps.mjs [--out DIR] [--timeout SECONDS] [--node VERSION] APP_DIR...
//   (--node: `pilot run --node VERSION`, a trial on another Node.js than the apps name)
//
// For each app: what it is (package manager, the Node.js it names, runtime, Procfile, Dockerfile),
// `pilot run DIR` (with --allow-dirty only when the folder has uncommitted changes), then one request
// through the router with `Host: <app>.localhost`; status < 500 counts as "answered". Prints a
// markdown table and writes results.json and each run's full log into --out (default: a temp folder).
//
// Processes: it starts `pilot up` (its own PILOT_HOME in a temp folder, ports chosen by the OS) and
// one `pilot run` at a time, each in its own process group, and stops them by pid, also on failure,
// on a timeout and on SIGINT/SIGTERM. Apps outlive `pilot up` by design, so before stopping it every
// app is scaled to 0 and the script waits for its instances to stop; any process still running in
// the temp PILOT_HOME after that is killed by pid. PILOT_RUNTIME_CACHE is passed on when set (a
// shared cache saves downloading each pinned Node.js again on every try).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'node:http';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PILOT = join(ROOT, 'bin', 'pilot.js');

function usage(msg) {
  if (msg) process.stderr.write(`error: ${msg}\n`);
  process.stderr.write('usage: node scripts/try-public-apps.mjs [--out DIR] [--timeout SECONDS] [--node VERSION] [--keep-home] APP_DIR...\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { apps: [], out: undefined, timeoutS: 900, keepHome: false, node: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out') o.out = argv[++i] ?? usage('--out needs a folder');
    else if (a === '--timeout') {
      o.timeoutS = Number(argv[++i]);
      if (!Number.isFinite(o.timeoutS) || o.timeoutS <= 0) usage('--timeout needs a number of seconds');
    } else if (a === '--keep-home') o.keepHome = true;
    else if (a === '--node') o.node = argv[++i] ?? usage('--node needs a version');
    else if (a === '-h' || a === '--help') usage();
    else if (a.startsWith('-')) usage(`unknown option ${a}`);
    else o.apps.push(resolve(a));
  }
  if (o.apps.length === 0) usage('give at least one app folder');
  for (const d of o.apps) if (!existsSync(join(d, 'package.json')) && !existsSync(join(d, 'pilot.yaml'))) usage(`${d} has neither package.json nor pilot.yaml`);
  return o;
}

const readJson = (file) => { try { return JSON.parse(readFileSync(file, 'utf8')); } catch { return undefined; } };
const readText = (file) => { try { return readFileSync(file, 'utf8'); } catch { return undefined; } };

/** What the app is, from its files alone (what a user would see before deploying). */
function describe(dir) {
  const pkg = readJson(join(dir, 'package.json')) ?? {};
  const has = (f) => existsSync(join(dir, f));
  const yaml = readText(join(dir, 'pilot.yaml')) ?? '';
  const pm = has('pnpm-lock.yaml') ? 'pnpm' : has('yarn.lock') ? 'yarn' : has('package-lock.json') ? 'npm (lock)' : has('npm-shrinkwrap.json') ? 'npm (shrinkwrap)' : 'npm (no lock)';
  // Pilot's order: pilot.yaml node, .node-version, .nvmrc, engines.node.
  const yamlNode = /^node:\s*(.+)$/m.exec(yaml)?.[1]?.trim();
  const node = yamlNode ? `pilot.yaml ${yamlNode}` : has('.node-version') ? `.node-version ${readText(join(dir, '.node-version')).trim()}` : has('.nvmrc') ? `.nvmrc ${readText(join(dir, '.nvmrc')).trim()}` : pkg.engines?.node ? `engines ${pkg.engines.node}` : 'none';
  const runtime = /^runtime:\s*docker/m.test(yaml) ? 'docker' : 'process';
  const extras = [];
  if (pkg.packageManager) extras.push(`packageManager ${pkg.packageManager}`);
  if (has('Procfile')) extras.push('Procfile');
  if (has('Dockerfile')) extras.push('Dockerfile');
  if (pkg.scripts?.build) extras.push('build script');
  if (yaml) extras.push('pilot.yaml');
  if (!pkg.scripts?.start && !has('Procfile') && !/^run:/m.test(yaml)) extras.push('no start script');
  const native = ['sqlite3', 'better-sqlite3', 'bcrypt', 'sharp', 'node-sass'].filter((m) => pkg.dependencies?.[m]);
  if (native.length) extras.push(`native: ${native.join(',')}`);
  return { pm, node, runtime, extras };
}

/** A folder's uncommitted changes (then `pilot run` needs --allow-dirty). Not a git tree: null. */
function dirty(dir) {
  const r = spawnSync('git', ['status', '--porcelain', '--', '.'], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) return null;
  return r.stdout.trim().length > 0;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Start a child in its own process group, output to a file; remember it for the final cleanup. */
const started = new Set();
function startChild(args, env, logFile) {
  const out = createWriteStream(logFile);
  const child = spawn(process.execPath, args, { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  child.stdout.pipe(out, { end: false });
  child.stderr.pipe(out, { end: false });
  child.done = new Promise((res) => child.on('close', (code, signal) => { out.end(); started.delete(child); res({ code, signal }); }));
  return child;
}

/** SIGTERM to the child's process group, then SIGKILL after `graceMs`. */
async function stopChild(child, graceMs = 10_000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
  const t = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
  await child.done;
  clearTimeout(t);
}

function pilotSync(args, env) {
  const r = spawnSync(process.execPath, [PILOT, ...args], { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function httpGet(url, host, timeoutMs = 15_000) {
  return new Promise((res) => {
    const req = request(url, { headers: { host }, timeout: timeoutMs }, (r) => {
      r.resume();
      r.on('end', () => res({ status: r.statusCode }));
      r.on('error', (e) => res({ error: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs / 1000}s`)));
    req.on('error', (e) => res({ error: e.message }));
    req.end();
  });
}

/** The first line that says what went wrong: pilot's `!!! step failed:` line, completed with the
 *  first telling line after it (the app's or the tool's own words) when it ends with a colon. */
function firstError(lines) {
  const i = lines.findIndex((l) => l.startsWith('!!! '));
  const j = i >= 0 ? i : lines.findIndex((l) => /^error: /.test(l));
  if (j < 0) return '';
  let msg = lines[j].replace(/^!!! /, '').replace(/^error: /, '');
  if (/:\s*$/.test(msg)) {
    const plain = lines.slice(j + 1).map((l) => l.trim()).filter((l) => l && !/^last output of|^hint:|ELIFECYCLE|^>/.test(l));
    const telling = plain.find((l) => /required|not found|cannot|missing|denied|EADDR|refus|ERR!|error/i.test(l))
      ?? lines.slice(j + 1).map((l) => l.trim()).find((l) => l && !/^last output of|^hint:/.test(l));
    if (telling) msg += ` ${telling}`;
  }
  // A deploy failure is followed by the app's last lines: its last one says most.
  if (/^\s*last output of /.test(lines[j + 1] ?? '')) {
    const tail = [];
    for (const l of lines.slice(j + 2)) { if (!/^ {4}/.test(l) || /^\s*hint:/.test(l)) break; if (l.trim()) tail.push(l.trim()); }
    const said = [...tail].reverse().find((l) => /^\w*Error\b/.test(l)) ?? [...tail].reverse().find((l) => /not found|Cannot find|EADDRINUSE/.test(l)) ?? tail[tail.length - 1];
    if (said) msg += ` [app: ${said}]`;
  }
  msg = msg.replace(/\((\/[^)\s]*:){2,}[^)\s]*\)/g, '(PATH)'); // a PATH list says nothing in a table
  return msg.length > 400 ? msg.slice(0, 397) + '...' : msg;
}

function parseRun(text) {
  const lines = text.split('\n');
  const app = /run #\d+[^:]*: app (\S+), commit/.exec(text)?.[1];
  const failed = /^!!! (\w+) failed/m.exec(text)?.[1];
  const build = /^\s+build done in (\S+)/m.exec(text)?.[1];
  const node = /^\s+node (\S+) \(from ([^)]*)\) builds the app/m.exec(text);
  const npm = /^\s+npm (\S+) \(paired/m.exec(text)?.[1];
  const install = /^--> (install|deps|dependencies)?[^:]*: (.*)$/m.exec(text)?.[2];
  return { app, failed, build, node: node ? `${node[1]} (${node[2]})` : undefined, npm, install, error: firstError(lines) };
}

async function waitForFile(file, child, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (existsSync(file)) { const j = readJson(file); if (j?.router) return j; }
    if (child.exitCode !== null) return undefined;
    await sleep(200);
  }
  return undefined;
}

/** Processes whose cwd or executable lies in `dir` (the temp PILOT_HOME): the apps' instances. */
function processesUnder(dir) {
  const pids = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    for (const link of ['cwd', 'exe']) {
      try { if (readlinkSync(`/proc/${p}/${link}`).startsWith(dir + '/')) { pids.push(Number(p)); break; } } catch { /* gone or not ours */ }
    }
  }
  return pids;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const home = mkdtempSync(join(tmpdir(), 'pilot-try-home-'));
  const out = resolve(opts.out ?? mkdtempSync(join(tmpdir(), 'pilot-try-out-')));
  mkdirSync(out, { recursive: true });
  const env = { ...process.env, PILOT_HOME: home };
  delete env.PILOT_SERVER;
  delete env.PILOT_TOKEN;
  const results = [];
  const deployed = new Set();
  let up;
  let interrupted = false;
  // First signal: stop the current `pilot run`; the cleanup then scales the apps to 0 and stops
  // `pilot up`. A second signal stops everything at once (the /proc sweep still runs).
  const onSignal = (sig) => {
    process.stderr.write(`\n${sig}: stopping everything this script started\n`);
    for (const c of started) if (c !== up || interrupted) { try { process.kill(-c.pid, 'SIGTERM'); } catch { /* gone */ } }
    interrupted = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    process.stderr.write(`pilot up (PILOT_HOME ${home}) ...\n`);
    up = startChild([PILOT, 'up', '--api-port', '0', '--router-port', '0'], env, join(out, 'pilot-up.log'));
    const server = await waitForFile(join(home, 'server.json'), up, 120_000);
    if (!server) throw new Error(`pilot up did not start (see ${join(out, 'pilot-up.log')})`);
    process.stderr.write(`  control plane ${server.api}, router ${server.router}\n`);
    for (const dir of opts.apps) {
      if (interrupted) break;
      const name = basename(dir);
      const facts = describe(dir);
      const isDirty = dirty(dir);
      const args = [PILOT, 'run', dir, ...(isDirty ? ['--allow-dirty'] : []), ...(opts.node ? ['--node', opts.node] : [])];
      const logFile = join(out, `${results.length + 1}-${name}.log`);
      process.stderr.write(`\n==> ${name}: pilot run${isDirty ? ' --allow-dirty' : ''} (${facts.pm}; node ${facts.node}; ${facts.runtime}) log ${logFile}\n`);
      const t0 = Date.now();
      const child = startChild(args, env, logFile);
      const timer = setTimeout(() => { void stopChild(child); }, opts.timeoutS * 1000);
      const { code, signal } = await child.done;
      clearTimeout(timer);
      const seconds = (Date.now() - t0) / 1000;
      const parsed = parseRun(readText(logFile) ?? '');
      if (parsed.app) deployed.add(parsed.app);
      let outcome;
      let answer = '';
      if (code === 0 && parsed.app) {
        const r = await httpGet(server.router + '/', `${parsed.app}.localhost`);
        answer = r.status !== undefined ? String(r.status) : r.error;
        outcome = r.status !== undefined && r.status < 500 ? 'deployed' : `deployed, but GET / through the router: ${answer}`;
      } else if (interrupted) outcome = 'interrupted';
      else if (signal || code === null) outcome = `timed out after ${opts.timeoutS}s`;
      else outcome = parsed.failed ? `failed at ${parsed.failed}` : 'failed before the run started';
      const row = { dir, name, app: parsed.app, ...facts, dirty: isDirty, exitCode: code, outcome, answer, error: code === 0 ? '' : parsed.error, node: parsed.node ?? '', npm: parsed.npm ?? '', buildTime: parsed.build ?? '', totalSeconds: Number(seconds.toFixed(1)), log: logFile };
      row.engines = facts.node;
      results.push(row);
      process.stderr.write(`    ${outcome}${row.error ? `: ${row.error}` : ''} (${row.totalSeconds}s)\n`);
      writeFileSync(join(out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
    }
  } finally {
    await cleanup(up, env, home, deployed, opts.keepHome);
  }
  const table = [
    '| app | what it is | node used | outcome | first error line | build | pilot run |',
    '|---|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.name}${r.app && r.app !== r.name ? ` (\`${r.app}\`)` : ''} | ${[r.pm, `node: ${r.engines}`, r.runtime, ...r.extras].join('; ')} | ${r.node || '-'}${r.npm ? `, npm ${r.npm}` : ''} | ${r.outcome}${r.answer && r.outcome === 'deployed' ? ` (GET / ${r.answer})` : ''} | ${r.error ? '`' + r.error.replace(/`/g, "'").replace(/\|/g, '\\|') + '`' : ''} | ${r.buildTime || '-'} | ${r.totalSeconds}s |`),
  ].join('\n');
  writeFileSync(join(out, 'table.md'), table + '\n');
  process.stdout.write(table + '\n');
  const ok = results.filter((r) => r.outcome === 'deployed').length;
  process.stdout.write(`\n${ok} of ${results.length} deployed and answered; logs and results.json in ${out}\n`);
}

async function cleanup(up, env, home, apps, keepHome) {
  if (up && up.exitCode === null) {
    // Apps outlive `pilot up` on purpose: scale each to 0 and wait until its instances are gone.
    for (const app of apps) pilotSync(['scale', app, '0'], env);
    const end = Date.now() + 60_000;
    for (const app of apps) {
      while (Date.now() < end) {
        const s = pilotSync(['status', app, '--json'], env);
        const j = (() => { try { return JSON.parse(s.stdout); } catch { return undefined; } })();
        if (!j || !j.instances?.some((i) => !['stopped', 'failed'].includes(i.state))) break;
        await sleep(500);
      }
    }
    await stopChild(up);
  }
  for (const c of [...started]) await stopChild(c);
  // Last resort: anything still running out of the temp PILOT_HOME was started through this script.
  const left = processesUnder(home);
  for (const pid of left) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  if (left.length) process.stderr.write(`killed ${left.length} process(es) left in ${home}: ${left.join(', ')}\n`);
  if (!keepHome) rmSync(home, { recursive: true, force: true });
}

main().catch((err) => {
  process.stderr.write(`error: ${err?.message ?? err}\n`);
  process.exitCode = 1;
});
