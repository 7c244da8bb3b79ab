/**
 * What `pilot init` finds in an app folder, and the commented pilot.yaml it writes. Pure: init.ts
 * reads the files (bounded in size) and git; this decides from their text.
 *
 * Nothing here trusts package.json's shape: a field of the wrong type is reported and ignored.
 */
import { isValidName, nameFrom } from '../core/names.js';

/** The files init looks at, as text (undefined: absent, or not read because it is too big). */
export interface InitFiles {
  readonly folder: string;
  readonly packageJson?: string | undefined;
  /** Why package.json was not read (too big). */
  readonly packageJsonSkipped?: string | undefined;
  readonly lockfiles: readonly string[];
  readonly dockerfile: boolean;
  readonly procfile?: string | undefined;
  readonly nvmrc?: string | undefined;
  readonly nodeVersionFile?: string | undefined;
  readonly monorepoMarkers: readonly string[];
  /** The start file's text, by path relative to the app (read by init.ts from the start command). */
  readonly sources: Readonly<Record<string, string>>;
}

export type PortHandling = { kind: 'reads-port' } | { kind: 'fixed'; port: number } | { kind: 'unknown' };

export interface Detected {
  readonly name: string;
  readonly packageManager: { readonly name: 'npm' | 'yarn' | 'pnpm'; readonly source: string };
  /** How the app starts and where that came from; undefined: nothing found. */
  readonly start?: { readonly command: string; readonly source: string; readonly runLine?: string } | undefined;
  readonly startFile?: string | undefined;
  readonly port: PortHandling;
  readonly dockerfile: boolean;
  readonly node?: { readonly spec: string; readonly source: string } | undefined;
  readonly buildScript: boolean;
  readonly monorepo: readonly string[];
  /** Things that were wrong or odd in the folder, said plainly. */
  readonly warnings: readonly string[];
}

const MAX_NAME_ECHO = 60;
const short = (s: string): string => (s.length > MAX_NAME_ECHO ? `${s.slice(0, MAX_NAME_ECHO)}…` : s);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The files a start command may run with node (`node server.js`, `nodemon -L src/index.js`,
 * `node ./bin/www`): the word after the runner, then with .js and /index.js, as node resolves it.
 */
export function startFilesOf(command: string): string[] {
  const words = command.trim().split(/\s+/);
  const i = words.findIndex((w) => w === 'node' || w.endsWith('/node') || w === 'nodemon' || w === 'tsx' || w === 'ts-node');
  if (i < 0) return [];
  const raw = words.slice(i + 1).find((w) => !w.startsWith('-'));
  if (raw === undefined || !/^[\w./@-]+$/.test(raw) || raw.split('/').includes('..') || raw.startsWith('/')) return [];
  const file = raw.replace(/^(\.\/)+/, '');
  return /\.[cm]?[jt]s$/.test(file) ? [file] : [file, `${file}.js`, `${file}/index.js`];
}

/** Whether source text reads $PORT, or listens on a fixed port. */
export function portHandling(source: string | undefined): PortHandling {
  if (source === undefined) return { kind: 'unknown' };
  if (
    /process\.env(\.PORT\b|\[\s*['"`]PORT['"`]\s*\])|\{\s*[^}]*\bPORT\b[^}]*\}\s*=\s*process\.env|Deno\.env\.get\(\s*['"]PORT/.test(source)
  ) {
    return { kind: 'reads-port' };
  }
  const m = /\.listen\(\s*(\d{2,5})\b/.exec(source) ?? /\bport\s*[:=]\s*(\d{2,5})\b/i.exec(source);
  if (m) return { kind: 'fixed', port: Number(m[1]) };
  return { kind: 'unknown' };
}

/** Whether source text starts a server (`.listen(`, `createServer(`, `serve({`). */
function serves(source: string | undefined): boolean {
  return source !== undefined && /\.listen\s*\(|\bcreateServer\s*\(|\bserve\s*\(\s*\{/.test(source);
}

function firstLine(text: string | undefined): string | undefined {
  for (const raw of (text ?? '').split(/\r?\n/)) {
    const line = raw.replace(/#.*$/, '').trim();
    if (line !== '') return line.slice(0, 64);
  }
  return undefined;
}

/** What the folder says, from its files. */
export function detect(files: InitFiles): Detected {
  const warnings: string[] = [];
  let pkg: Record<string, unknown> = {};
  if (files.packageJsonSkipped) warnings.push(`package.json not read: ${files.packageJsonSkipped}`);
  else if (files.packageJson !== undefined) {
    try {
      const parsed: unknown = JSON.parse(files.packageJson.replace(/^\uFEFF/, ''));
      if (isObject(parsed)) pkg = parsed;
      else warnings.push('package.json is not a JSON object: ignored (pilot run will refuse it too)');
    } catch (err) {
      warnings.push(
        `package.json is not valid JSON (${short((err as Error).message)}): ignored; pilot run will refuse it until it is fixed`,
      );
    }
  }
  const field = <T>(key: string, ok: (v: unknown) => v is T, what: string): T | undefined => {
    const v = pkg[key];
    if (v === undefined) return undefined;
    if (ok(v)) return v;
    warnings.push(`package.json "${key}" is not ${what}: ignored`);
    return undefined;
  };
  const isString = (v: unknown): v is string => typeof v === 'string';
  const rawScripts = field('scripts', isObject, 'an object');
  const scripts: Record<string, string> = {};
  for (const [k, v] of Object.entries(rawScripts ?? {})) {
    if (typeof v === 'string') scripts[k] = v;
    else warnings.push(`package.json script "${short(k)}" is not a string: ignored`);
  }
  const engines = field('engines', isObject, 'an object');
  const pmField = field('packageManager', isString, 'a string like "pnpm@9.1.0"');
  const main = field('main', isString, 'a string');
  const pkgName = field('name', isString, 'a string');

  // Name: package.json's (without scope), else the folder's, made valid when neither is.
  const bare = pkgName?.replace(/^@[^/]+\//, '').toLowerCase();
  const folder = files.folder.toLowerCase();
  const name = [bare, folder].find((n) => n !== undefined && isValidName(n)) ?? nameFrom(bare ?? '') ?? nameFrom(folder) ?? 'app';

  // Package manager: the packageManager field, else the lockfile (npm's first, as the build does).
  const pmMatch = pmField === undefined ? null : /^(npm|yarn|pnpm)@/.exec(pmField);
  if (pmField !== undefined && !pmMatch)
    warnings.push(
      `package.json "packageManager" ${JSON.stringify(short(pmField))} names no npm, yarn or pnpm version: the build will refuse it`,
    );
  const lockName = (f: string): 'npm' | 'yarn' | 'pnpm' => (f === 'yarn.lock' ? 'yarn' : f === 'pnpm-lock.yaml' ? 'pnpm' : 'npm');
  const packageManager = pmMatch
    ? { name: pmMatch[1] as 'npm' | 'yarn' | 'pnpm', source: `packageManager "${short(pmField!)}"` }
    : files.lockfiles.length > 0
      ? { name: lockName(files.lockfiles[0]!), source: files.lockfiles[0]! }
      : {
          name: 'npm' as const,
          source: files.packageJson === undefined ? 'no package.json' : 'no lockfile (npm install, versions not pinned)',
        };
  if (files.lockfiles.length > 1)
    warnings.push(`several lockfiles (${files.lockfiles.join(', ')}): the build uses ${files.lockfiles[0]}; delete the others`);

  // Start: Procfile web:, else the start script, else server.js (npm start's default), else main,
  // else the file a "dev"/"serve" script runs (often nodemon), else index.js.
  const web = /^web:\s*(.+)$/m.exec(files.procfile ?? '')?.[1]?.trim();
  const present = (cmd: string): string | undefined => startFilesOf(cmd).find((f) => files.sources[f] !== undefined);
  const devScript = ['dev', 'serve', 'develop'].find((k) => scripts[k] !== undefined && present(scripts[k]!) !== undefined);
  let start: Detected['start'];
  if (web) start = { command: web, source: 'Procfile web:' };
  else if (scripts.start) start = { command: scripts.start, source: 'package.json "start"' };
  else if (files.sources['server.js'] !== undefined) start = { command: 'node server.js', source: "server.js (npm start's default)" };
  // "main" and index.js are a library's entry as often as a server's: taken only when they listen.
  else if (main && serves(files.sources[main])) start = { command: `node ${main}`, source: 'package.json "main"', runLine: `node ${main}` };
  else if (devScript) {
    const f = present(scripts[devScript]!)!;
    start = { command: `node ${f}`, source: `the file package.json "${devScript}" runs`, runLine: `node ${f}` };
  } else if (serves(files.sources['index.js'])) start = { command: 'node index.js', source: 'index.js', runLine: 'node index.js' };
  const startFile = start ? present(start.command) : undefined;
  const port = portHandling(startFile ? files.sources[startFile] : undefined);

  const nodeSpec =
    firstLine(files.nodeVersionFile) !== undefined
      ? { spec: firstLine(files.nodeVersionFile)!, source: '.node-version' }
      : firstLine(files.nvmrc) !== undefined
        ? { spec: firstLine(files.nvmrc)!, source: '.nvmrc' }
        : isObject(engines) && typeof engines.node === 'string'
          ? { spec: engines.node.slice(0, 64), source: 'package.json engines.node' }
          : undefined;
  if (engines !== undefined && engines.node !== undefined && typeof engines.node !== 'string')
    warnings.push('package.json engines.node is not a string: ignored');

  const monorepo = [...files.monorepoMarkers];
  if (pkg.workspaces !== undefined) monorepo.unshift('package.json "workspaces"');
  return {
    name,
    packageManager,
    start,
    startFile,
    port,
    dockerfile: files.dockerfile,
    node: nodeSpec,
    buildScript: scripts.build !== undefined || scripts['heroku-postbuild'] !== undefined,
    monorepo,
    warnings,
  };
}

/** A YAML scalar that reads back as the same string (double-quoted JSON is valid YAML). */
const y = (s: string): string => JSON.stringify(s);
/** Text from the folder inside a comment: one line, no control characters. */

const c = (s: string): string => short(s.replace(/[\x00-\x1f\x7f]+/g, ' '));

/** The commented pilot.yaml for what was found: every active line is something the folder needs. */
export function pilotYaml(d: Detected, builderNode: string): string {
  const out: string[] = [
    '# pilot.yaml: written by `pilot init` from what it found in this folder.',
    '# Every key is optional; the schema is schema/pilot.schema.json of Pilot, the README says what each does.',
    '',
    `name: ${d.name}`,
    '',
  ];
  if (d.dockerfile) {
    out.push(
      '# A Dockerfile is here: instances run as containers built from it (remove this line to run a process).',
      'runtime: docker',
      '',
    );
  }
  out.push(`# Package manager: ${d.packageManager.name}, from ${c(d.packageManager.source)}. The build installs with it; nothing to set.`);
  out.push(
    d.buildScript
      ? '# Build: the "build" script runs after the install.'
      : '# Build: no "build" script; add commands here if the app needs some:',
  );
  out.push('# build: [npm run build]', '');
  if (!d.start) {
    out.push(
      '# Start: NOT FOUND (no Procfile web:, no "start" script, no server.js, no "main" file).',
      '# Add a "start" script to package.json, or say how the app starts:',
      '# run: node server.js',
    );
  } else if (d.start.runLine) {
    out.push(`# Start: from ${c(d.start.source)} (there is no "start" script).`, `run: ${y(d.start.runLine)}`);
  } else {
    out.push(`# Start: \`${c(d.start.command)}\` from ${c(d.start.source)}; nothing to set.`, '# run: node server.js');
  }
  out.push('');
  switch (d.port.kind) {
    case 'reads-port':
      out.push(`# Port: ${d.startFile ?? 'the app'} reads $PORT, as Pilot needs: each instance gets its own.`);
      break;
    case 'fixed':
      if (d.port.port >= 1024 && d.port.port <= 65535) {
        out.push(
          `# Port: ${d.startFile ?? 'the app'} listens on ${d.port.port} and does not read $PORT: one instance per node.`,
          '# Better: listen on process.env.PORT and remove this line.',
          `port: ${d.port.port}`,
        );
      } else {
        out.push(
          `# Port: ${d.startFile ?? 'the app'} listens on ${d.port.port}, which Pilot cannot give an unprivileged app: listen on process.env.PORT.`,
        );
      }
      break;
    case 'unknown':
      out.push(
        `# Port: could not tell whether ${d.startFile ?? 'the app'} reads $PORT. It must listen on process.env.PORT (or set port: N).`,
      );
      break;
  }
  out.push('');
  if (d.node)
    out.push(`# Node.js: ${c(d.node.spec)} from ${d.node.source}; Pilot reads that itself. To override:`, `# node: ${y(c(d.node.spec))}`);
  else
    out.push(
      `# Node.js: the app names no version, so the builder's (${builderNode}) is used. Pin one:`,
      `# node: ${y(`${builderNode.replace(/^v/, '').split('.')[0]}.x`)}`,
    );
  out.push(
    '',
    '# Health check: GET / must answer below 500 once the app is ready.',
    '# health: { path: /healthz, interval: 1s, timeout: 2s }',
    '# replicas: 2',
    `# hosts: [${d.name}.example.com]   # besides ${d.name}.localhost`,
    '',
  );
  return out.join('\n');
}

/** A GitHub repository from a remote URL (https, ssh, scp-like), without any credentials in it. */
export function githubRepo(remote: string): { owner: string; repo: string } | undefined {
  const m =
    /^(?:https?:\/\/(?:[^@/]+@)?github\.com\/|ssh:\/\/(?:[^@/]+@)?github\.com(?::\d+)?\/|(?:[\w.-]+@)?github\.com:)([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+?)(?:\.git)?\/?$/.exec(
      remote.trim(),
    );
  if (!m) return undefined;
  return { owner: m[1]!, repo: m[2]! };
}

/** A remote URL fit to print: user and password removed (`https://TOKEN@github.com/…` is common). */
export function redactRemote(remote: string): string {
  return remote.trim().replace(/^([a-z+]+:\/\/)[^@/]+@/i, '$1');
}
