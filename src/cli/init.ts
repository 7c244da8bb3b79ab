/**
 * `pilot init [DIR]`: reads the app folder (bounded: a huge or hostile file is reported, not
 * loaded), writes a commented pilot.yaml with what it found (checked by the real config validator
 * before it is written; never over an existing one without --force), and prints the steps to deploy
 * it on push from its GitHub repository.
 */
import { execFile } from 'node:child_process';
import { open, stat, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { parse } from 'yaml';
import { validateAppConfig } from '../core/app-config.js';
import { fail } from '../core/errors.js';
import { detect, githubRepo, pilotYaml, redactRemote, startFilesOf, type Detected, type InitFiles } from './init-detect.js';
import { type GlobalOptions } from './context.js';

/** package.json, Procfile, version files: larger than this is not an app's manifest. */
const MAX_MANIFEST = 1024 * 1024;
/** A start file is scanned for PORT up to this size. */
const MAX_SOURCE = 512 * 1024;

/** The file's text, or undefined when absent; `tooBig` when it is larger than `max`. */
async function readBounded(file: string, max: number): Promise<string | undefined | { tooBig: number }> {
  let fh;
  try {
    const st = await stat(file);
    if (!st.isFile()) return undefined;
    if (st.size > max) return { tooBig: st.size };
    fh = await open(file, 'r');
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, st.size, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } catch {
    return undefined;
  } finally {
    await fh?.close();
  }
}
const text = (v: string | undefined | { tooBig: number }): string | undefined => (typeof v === 'string' ? v : undefined);
const exists = (file: string): Promise<boolean> =>
  stat(file).then(
    (s) => s.isFile(),
    () => false,
  );

/** Everything init.detect reads from the folder. */
export async function readInitFiles(dir: string): Promise<InitFiles> {
  const pkg = await readBounded(join(dir, 'package.json'), MAX_MANIFEST);
  const lockfiles = (
    await Promise.all(
      ['package-lock.json', 'npm-shrinkwrap.json', 'yarn.lock', 'pnpm-lock.yaml'].map(async (f) => ((await exists(join(dir, f))) ? f : '')),
    )
  ).filter(Boolean);
  const markers = (
    await Promise.all(
      ['pnpm-workspace.yaml', 'lerna.json', 'turbo.json', 'nx.json'].map(async (f) => ((await exists(join(dir, f))) ? f : '')),
    )
  ).filter(Boolean);
  const base: InitFiles = {
    folder: basename(dir),
    packageJson: text(pkg),
    packageJsonSkipped: typeof pkg === 'object' ? `${pkg.tooBig} bytes, more than a package.json has (limit ${MAX_MANIFEST})` : undefined,
    lockfiles,
    dockerfile: await exists(join(dir, 'Dockerfile')),
    procfile: text(await readBounded(join(dir, 'Procfile'), MAX_MANIFEST)),
    nvmrc: text(await readBounded(join(dir, '.nvmrc'), 4096)),
    nodeVersionFile: text(await readBounded(join(dir, '.node-version'), 4096)),
    monorepoMarkers: markers,
    sources: {},
  };
  // A first pass says which start file to read; then it is scanned for PORT.
  const first = detect(base);
  const candidates = new Set(['server.js', 'index.js']);
  const main = (() => {
    try {
      const p = JSON.parse(base.packageJson ?? '{}') as { main?: unknown };
      return typeof p.main === 'string' && !p.main.includes('..') ? p.main : undefined;
    } catch {
      return undefined;
    }
  })();
  if (main) candidates.add(main);
  for (const cmd of [first.start?.command, ...['dev', 'serve', 'develop'].map((k) => scriptOf(base.packageJson, k))]) {
    for (const f of cmd === undefined ? [] : startFilesOf(cmd)) candidates.add(f);
  }
  const sources: Record<string, string> = {};
  for (const f of candidates) {
    const t = text(await readBounded(join(dir, f), MAX_SOURCE));
    if (t !== undefined) sources[f] = t;
  }
  return { ...base, sources };
}

/** A string script of a package.json text, if it parses and has one. */
function scriptOf(pkg: string | undefined, name: string): string | undefined {
  try {
    const s = (JSON.parse(pkg ?? '{}') as { scripts?: Record<string, unknown> }).scripts?.[name];
    return typeof s === 'string' ? s : undefined;
  } catch {
    return undefined;
  }
}

function git(dir: string, args: string[]): Promise<string | undefined> {
  return new Promise((done) => {
    execFile(
      'git',
      ['-C', dir, ...args],
      { timeout: 10_000, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/' } },
      (err, stdout) => done(err ? undefined : stdout.trim()),
    );
  });
}

/** Quoted for a POSIX shell when it holds anything but safe characters (the steps are copied into one). */
function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The steps to deploy on push, for the folder's git remote. */
export function nextSteps(d: Detected, remote: string | undefined, branch: string | undefined, relDir: string): string[] {
  const lines: string[] = [];
  const gh = remote ? githubRepo(remote) : undefined;
  const b = branch ?? 'main';
  if (remote === undefined) {
    lines.push('This folder has no git remote "origin": push it to GitHub first, then run `pilot init` again for the steps.');
  } else if (gh === undefined) {
    const url = redactRemote(remote);
    lines.push(
      `Deploy on every push to ${b}:`,
      `  pilot apps create ${d.name} --repo ${shellWord(url)} --branch ${shellWord(b)}`,
      '  then add the webhook it prints (URL and secret) in your git host (Gitea/GitLab: a GitHub-compatible push webhook).',
    );
  } else {
    const https = `https://github.com/${gh.owner}/${gh.repo}`;
    lines.push(
      `Deploy ${gh.owner}/${gh.repo} on every push to ${b}:`,
      `  1. pilot apps create ${d.name} --repo ${https}.git --branch ${shellWord(b)}`,
      '     (a private repository: --repo git@github.com:' + `${gh.owner}/${gh.repo}.git with a deploy key on the server)`,
      `  2. ${https}/settings/hooks/new: Payload URL and Secret as step 1 prints them,`,
      '     Content type application/json, "Just the push event".',
      '  3. Commit statuses on GitHub (optional): PILOT_GITHUB_TOKEN=… (repo:status) when running step 1.',
    );
  }
  if (relDir !== '.' && relDir !== '') lines.push(`  The app is in ${relDir} of the repository: keep pilot.yaml there.`);
  lines.push(`Or deploy this folder now: pilot run ${relDir === '' ? '.' : shellWord(relDir)}`);
  return lines;
}

export async function init(dir: string, opts: GlobalOptions & { force?: boolean; dryRun?: boolean; name?: string }): Promise<void> {
  const abs = resolve(dir);
  const st = await stat(abs).catch(() => undefined);
  if (!st) throw fail.initNotAFolder({ dir, why: 'no such folder' });
  if (!st.isDirectory()) throw fail.initNotAFolder({ dir, why: 'not a folder' });
  const target = join(abs, 'pilot.yaml');
  const already = await stat(target).then(
    () => true,
    () => false,
  );
  if (already && !opts.force && !opts.dryRun) throw fail.initConfigExists({ file: target });

  const found = detect(await readInitFiles(abs));
  const detected: Detected = opts.name === undefined ? found : { ...found, name: opts.name };
  const yamlText = pilotYaml(detected, process.version);
  // What init writes must load: the same validator `pilot run` uses (a bad --name is refused here).
  validateAppConfig(parse(yamlText), 'pilot.yaml');

  const top = await git(abs, ['rev-parse', '--show-toplevel']);
  const remote = top === undefined ? undefined : await git(abs, ['remote', 'get-url', 'origin']);
  const branch = top === undefined ? undefined : await git(abs, ['symbolic-ref', '--short', 'HEAD']);
  const relDir = top === undefined ? '.' : (await git(abs, ['rev-parse', '--show-prefix']))?.replace(/\/$/, '') || '.';
  const steps = nextSteps(detected, remote, branch, relDir);

  if (!opts.dryRun) await writeFile(target, yamlText, { mode: 0o644 });
  if (opts.json) {
    const { warnings, ...facts } = detected;
    process.stdout.write(
      JSON.stringify(
        {
          file: target,
          written: !opts.dryRun,
          replaced: already && !opts.dryRun,
          detected: facts,
          warnings,
          remote: remote && redactRemote(remote),
          steps,
          ...(opts.dryRun ? { yaml: yamlText } : {}),
        },
        null,
        2,
      ) + '\n',
    );
    return;
  }
  const out: string[] = [];
  if (opts.dryRun) out.push(yamlText, '---');
  for (const w of detected.warnings) out.push(`warning: ${w}`);
  out.push(
    `${opts.dryRun ? 'would write' : already ? 'replaced' : 'wrote'} ${target}`,
    `  app ${detected.name}; ${detected.packageManager.name} (${detected.packageManager.source}); start: ${detected.start ? `${detected.start.command} (${detected.start.source})` : 'NOT FOUND'}`,
    `  port: ${detected.port.kind === 'reads-port' ? 'reads $PORT' : detected.port.kind === 'fixed' ? `fixed ${detected.port.port}` : 'unknown'}; Node.js: ${detected.node ? `${detected.node.spec} (${detected.node.source})` : `not named (the builder's ${process.version})`}${detected.dockerfile ? '; Dockerfile: runtime docker' : ''}`,
  );
  if (detected.monorepo.length > 0) {
    out.push(`  this looks like a monorepo root (${detected.monorepo.join(', ')}): for one app of it, run \`pilot init path/to/app\``);
  }
  out.push('', ...steps);
  process.stdout.write(out.join('\n') + '\n');
}
