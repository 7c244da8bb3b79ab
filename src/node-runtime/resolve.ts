/**
 * Which Node.js an app wants, and which exact version that is. Pure: the caller reads the files
 * (app-files.ts) and the registry's version list (npm-registry.ts).
 *
 *   pilot.yaml `node:` ─► .node-version ─► .nvmrc ─► package.json engines.node ─► (none: the builder's)
 *        first one present wins; its text is an exact version or a semver range
 */
import semver from 'semver';
import { fail } from '../core/errors.js';
/** What the app asks for and where it said so. */
export interface WantedNode {
  /** As written (trimmed): `22.23.3`, `22.x`, `^20.11`. */
  readonly spec: string;
  /** For display: `pilot.yaml`, `.node-version`, `.nvmrc`, `engines.node`, or `--node` (`pilot run --node`, a trial). */
  readonly file: 'pilot.yaml' | '.node-version' | '.nvmrc' | 'engines.node' | '--node';
}

export interface AppNodeFiles {
  readonly pilotYaml?: string | undefined;
  readonly nodeVersion?: string | undefined;
  readonly nvmrc?: string | undefined;
  readonly enginesNode?: string | undefined;
  /** package.json engines.npm: not a Node.js version, but read with it (the npm paired with the node). */
  readonly enginesNpm?: string | undefined;
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

/** nvm's names for "the newest release" (.nvmrc, .node-version); not ranges to npm, so not in engines.node. */
const ALIASES = new Set(['node', 'stable', 'latest', 'current']);
/** LTS lines by codename (nvm's `lts/iron`), which name a moving target Pilot does not resolve. */
const LTS = /^(lts(\/.*)?|\*?lts|argon|boron|carbon|dubnium|erbium|fermium|gallium|hydrogen|iron|jod|krypton)$/i;

/** The exact version the spec names without a version list (`22.23.3`, `v20.1.0`), or undefined for a range. */
export function exactVersion(spec: string): string | undefined {
  return semver.valid(spec.trim()) ?? undefined;
}

/**
 * The range a spec means, with npm's own semver (the `semver` package, as `npm install` reads
 * engines.node). Throws invalid_config, with a hint, for LTS names and for text that is no range.
 */
export function nodeRange(w: WantedNode): string {
  const spec = w.spec.trim();
  if (LTS.test(spec)) {
    throw fail.ltsNameRefused({ file: w.file, spec: w.spec });
  }
  // engines.node means exactly what it means to npm; the version files also take nvm's aliases.
  if (w.file !== 'engines.node' && ALIASES.has(spec.toLowerCase())) return '*';
  const range = semver.validRange(spec);
  if (range === null) {
    throw fail.invalidNodeSpec({ file: w.file, spec: w.spec });
  }
  return range;
}

/**
 * The exact version for a wanted spec among the versions available, highest match first
 * (pre-releases only when the range names one, as npm does). Throws invalid_config for a spec that
 * is neither a version nor a range, and `node_version_not_found` (with the nearest available
 * versions) when nothing matches.
 */
export function resolveVersion(w: WantedNode, available: readonly string[], where: string): string {
  const hit = semver.maxSatisfying(
    available.filter((v) => semver.valid(v) !== null),
    nodeRange(w),
  );
  if (hit !== null) return semver.clean(hit) ?? hit;
  const near = nearestVersions(available, w.spec);
  throw fail.nodeVersionNotFound({ spec: w.spec, file: w.file, where, nearest: near }, { details: { spec: w.spec, nearest: near } });
}

/**
 * Up to `n` versions a person probably meant: the newest release of the majors closest to the one
 * the spec names (for `^99`: the newest majors; for `22.99.x`: the newest 22s first).
 */
export function nearestVersions(available: readonly string[], spec: string, n = 4): string[] {
  const parsed = available.map((v) => semver.parse(v)).filter((v): v is semver.SemVer => v !== null && v.prerelease.length === 0);
  if (parsed.length === 0) return [];
  const m = /(\d+)(?:\.(\d+))?/.exec(spec);
  const major = m ? Number(m[1]) : Math.max(...parsed.map((v) => v.major));
  const newest = new Map<number, semver.SemVer>();
  for (const v of parsed) {
    const cur = newest.get(v.major);
    if (!cur || v.compare(cur) > 0) newest.set(v.major, v);
  }
  const sameMajor = parsed
    .filter((v) => v.major === major)
    .sort((a, b) => b.compare(a))
    .slice(0, 2);
  const others = [...newest.values()]
    .filter((v) => v.major !== major)
    .sort((a, b) => Math.abs(a.major - major) - Math.abs(b.major - major) || b.major - a.major);
  return [...sameMajor, ...others].slice(0, n).map((v) => v.version);
}
