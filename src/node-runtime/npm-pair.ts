/**
 * Which npm goes with a pinned Node.js. Pure: the caller reads npm's releases from the registry
 * (`npm view npm@>=1 version engines --json`) and tries the candidates in order.
 *
 *   npm releases ─► not a pre-release, not newer than dist-tags.latest
 *                ─► in the app's engines.npm range (when it has one)
 *                ─► npm's own engines.node admits the node ──► newest first
 *
 * npm 2.0 to 6.13.7 publish no engines.node. To npm that means "any node", but those releases do
 * not run on the nodes older than the ones they shipped with (npm 6.0 on Node 4: a SyntaxError).
 * So they come after no declared candidate that is newer, one per npm major (the newest of each),
 * and the caller keeps the first that answers `npm --version` on the pinned node.
 */
import semver from 'semver';
import { type PilotError, fail } from '../core/errors.js';

export interface NpmRelease {
  readonly version: string;
  /** npm's own engines.node, when that release publishes one. */
  readonly enginesNode?: string | undefined;
}

export interface NpmCandidate {
  readonly version: string;
  /** For the log: why this npm (`its engines.node "^20.17.0 || >=22.9.0" admits 20.20.2`). */
  readonly why: string;
  /** True when npm publishes no engines.node for it: only `npm --version` on the node can tell. */
  readonly unverified: boolean;
}

/** At most this many npm releases are fetched and tried for one node. */
export const MAX_NPM_TRIES = 4;

/**
 * The npm releases to try for `node`, best first (at most MAX_NPM_TRIES). Throws npm_incompatible
 * when the app's engines.npm leaves none that runs on the node (naming both), and invalid_config
 * when engines.npm is not a range.
 */
export function npmCandidates(
  releases: readonly NpmRelease[],
  node: string,
  opts: { enginesNpm?: string | undefined; latest?: string | undefined } = {},
): NpmCandidate[] {
  const wanted = opts.enginesNpm?.trim() || undefined;
  const range = wanted === undefined ? '*' : semver.validRange(wanted);
  if (range === null) {
    throw fail.invalidEnginesNpm({ wanted });
  }
  const latest = opts.latest !== undefined ? semver.valid(opts.latest) : null;
  const usable = releases.filter(
    (r) =>
      semver.valid(r.version) !== null &&
      semver.prerelease(r.version) === null &&
      (latest === null || wanted !== undefined || semver.lte(r.version, latest)) &&
      semver.satisfies(r.version, range),
  );
  if (usable.length === 0) {
    throw fail.noNpmForEngines({ wanted }, { details: { enginesNpm: wanted, node } });
  }
  const declared: NpmCandidate[] = [];
  const undeclared = new Map<number, NpmRelease>();
  for (const r of usable) {
    const engines = r.enginesNode?.trim();
    if (engines === undefined || engines === '') {
      const major = semver.major(r.version);
      const cur = undeclared.get(major);
      if (!cur || semver.gt(r.version, cur.version)) undeclared.set(major, r);
    } else if (semver.validRange(engines) !== null && semver.satisfies(node, engines)) {
      declared.push({ version: r.version, why: `its engines.node ${JSON.stringify(engines)} admits ${node}`, unverified: false });
    }
  }
  declared.sort((a, b) => semver.rcompare(a.version, b.version));
  const newestDeclared = declared[0]?.version;
  const guesses = [...undeclared.values()]
    .filter((r) => newestDeclared === undefined || semver.gt(r.version, newestDeclared))
    .map((r) => ({
      version: r.version,
      why: `npm ${semver.major(r.version)}.x publishes no engines.node, and \`npm --version\` runs on ${node}`,
      unverified: true,
    }));
  const all = [...guesses, ...declared].sort((a, b) => semver.rcompare(a.version, b.version)).slice(0, MAX_NPM_TRIES);
  if (all.length === 0) throw incompatible(usable, node, wanted);
  return all;
}

function incompatible(usable: readonly NpmRelease[], node: string, wanted: string | undefined): PilotError {
  const newest = [...usable].sort((a, b) => semver.rcompare(a.version, b.version))[0]!;
  const needs = newest.enginesNode
    ? `npm ${newest.version} needs Node.js ${JSON.stringify(newest.enginesNode)}`
    : `npm ${newest.version} does not say which Node.js it needs`;
  const details = { enginesNpm: wanted ?? null, node, newest: newest.version, newestEnginesNode: newest.enginesNode ?? null };
  return wanted === undefined
    ? fail.noNpmRunsOnNode({ node, needs }, { details })
    : fail.enginesNpmExcludesNode({ wanted, node, needs }, { details });
}

/** The error when every candidate failed `npm --version` on the node. */
export function noNpmRuns(node: string, tried: readonly { version: string; error: string }[], wanted: string | undefined): PilotError {
  const list = tried.map((t) => `npm ${t.version}: ${t.error}`).join('; ');
  const details = { node, tried, enginesNpm: wanted ?? null };
  return wanted === undefined
    ? fail.noNpmTriedRuns({ node, list }, { details })
    : fail.enginesNpmTriedExcludeNode({ wanted, node, list }, { details });
}
