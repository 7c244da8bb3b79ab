#!/usr/bin/env node
// `npm test`: type-check and compile, lint, then run unit tests (beside the code) and integration
// tests (test/integration) with Node's built-in runner. Pass file filters as arguments:
//   npm test -- artifacts      runs only test files whose path contains "artifacts".
// It ends with the list of every skipped test and why (scripts/skip-reporter.mjs records them).
// Under CI (CI=true, or any PILOT_REQUIRE_* set) a skip is a failure: exit 1 after the list.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const faultsOnly = process.argv[2] === '--faults';
// test/browser: the dashboard driven by Chromium (npm run test:browser, run by .ci/run), heavy: its own command.
const browserOnly = process.argv[2] === '--browser';
const filters = process.argv.slice(faultsOnly || browserOnly ? 3 : 2);

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

function findTests(dir) {
  const out = [];
  let names = [];
  try { names = readdirSync(dir); } catch { return out; }
  for (const name of names.sort()) {
    const p = join(dir, name);
    // test/faults is the fault-injection suite: its own command (npm run test:faults), run by .ci/run.
    if (statSync(p).isDirectory()) { if (!(name === 'faults' && !faultsOnly) && !(name === 'browser' && !browserOnly)) out.push(...findTests(p)); }
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

console.log('# type-check and compile (tsc)');
run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json']);
// The dashboard's own tree (web/: DOM types, JSX): type-checked here, built by `npm run build:web`.
console.log('# type-check the dashboard (tsc -p web)');
run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'web/tsconfig.json']);
// The browser test's run leaves linting to `npm test` (CI runs both).
if (!process.env.PILOT_SKIP_LINT && !browserOnly) {
  console.log('# lint (eslint)');
  run(process.execPath, [join(root, 'node_modules/eslint/bin/eslint.js'), 'src', 'test']);
  // Formatting is Prettier's (.prettierrc.json), applied with `npm run format`.
  console.log('# format (prettier --check)');
  run(process.execPath, [join(root, 'node_modules/prettier/bin/prettier.cjs'), '--check', '--log-level', 'warn', 'src/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts', 'web/src/**/*.{ts,tsx}']);
  // Which folder may import which (.dependency-cruiser.cjs, src/README.md): no folder cycles.
  console.log('# folder layers (dependency-cruiser)');
  run(process.execPath, [join(root, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs'), 'src', '--config', '.dependency-cruiser.cjs']);
}

const pick = (files) => files.filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
const unit = faultsOnly || browserOnly ? [] : pick(findTests(join(root, 'dist/src')));
const integration = pick(findTests(join(root, faultsOnly ? 'dist/test/faults' : browserOnly ? 'dist/test/browser' : 'dist/test')));
const files = [...unit, ...integration];
if (files.length === 0) {
  console.error('no test files matched', filters);
  process.exit(1);
}
console.log(`# running ${unit.length} unit and ${integration.length} integration test files`);
const { probeEngine } = await import(join(root, 'dist/src/docker/probe.js'));
const docker = await probeEngine(undefined, 3000);
if (!docker.available) console.log(`# Docker tests skipped: ${docker.error}`);
for (const f of files) console.log(`#   ${relative(root, f)}`);
const skipDir = mkdtempSync(join(tmpdir(), 'pilot-skips-'));
const skipFile = join(skipDir, 'skips.jsonl');
const r = spawnSync(process.execPath, [
  '--enable-source-maps', '--test', '--test-concurrency=2',
  '--test-reporter=tap', '--test-reporter-destination=stdout',
  `--test-reporter=${join(root, 'scripts/skip-reporter.mjs')}`, `--test-reporter-destination=${skipFile}`,
  ...files,
], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, PILOT_TEST: '1' },
});
let skips = [];
try {
  skips = readFileSync(skipFile, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
} catch {
  // no file: nothing was skipped (or the runner died; its status says so)
}
rmSync(skipDir, { recursive: true, force: true });
const strict = process.env.CI === 'true' || process.env.CI === '1' || Object.keys(process.env).some((k) => k.startsWith('PILOT_REQUIRE_') && process.env[k] !== '' && process.env[k] !== '0');
// What no package can install (a kernel without a cgroup controller) may be named in
// PILOT_SKIP_ALLOWED (a regular expression over the reason): still listed, not fatal.
const allowed = process.env.PILOT_SKIP_ALLOWED ? new RegExp(process.env.PILOT_SKIP_ALLOWED) : undefined;
const fatal = skips.filter((s) => !(allowed && allowed.test(String(s.reason))));
console.log(`# skipped: ${skips.length}`);
for (const s of skips) console.log(`#   ${s.file ?? '?'}: ${s.name} — ${s.reason}${fatal.includes(s) ? '' : ' (allowed: PILOT_SKIP_ALLOWED)'}`);
if (fatal.length > 0 && strict) {
  console.log('# CI (CI=true or PILOT_REQUIRE_*): a skipped test is a failure; install what the reasons above name');
  process.exit(1);
}
process.exit(r.status ?? 1);
