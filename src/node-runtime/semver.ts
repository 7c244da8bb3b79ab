/**
 * The part of semver that Node.js version wishes use: exact versions, x-ranges (`22`, `22.x`,
 * `22.1.*`), caret, tilde, comparators (`>=20.11 <21`), hyphen ranges and `||`. Pure. Pre-release
 * versions (`23.0.0-rc.1`) match only when named exactly, as in npm's semver.
 */

export interface Version {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  readonly pre: string;
}

type Op = '<' | '<=' | '>' | '>=' | '=';
interface Comparator {
  readonly op: Op;
  readonly v: Version;
}
/** A range: alternatives (||) of sets of comparators that must all hold. */
export type Range = readonly (readonly Comparator[])[];

const VERSION = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;
const PARTIAL = /^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

/** A full version (`22.23.3`, `v20.1.0`), or undefined. */
export function parseVersion(s: string): Version | undefined {
  const m = VERSION.exec(s.trim());
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), pre: m[4] ?? '' };
}

export function formatVersion(v: Version): string {
  return `${v.major}.${v.minor}.${v.patch}${v.pre ? `-${v.pre}` : ''}`;
}

/** Negative when a < b, 0 when equal, positive when a > b (pre-releases sort before their release). */
export function compareVersions(a: Version, b: Version): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch || comparePre(a.pre, b.pre);
}

function comparePre(a: string, b: string): number {
  if (a === b) return 0;
  if (a === '') return 1;
  if (b === '') return -1;
  const pa = a.split('.');
  const pb = b.split('.');
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d+$/.test(x) ? Number(x) : undefined;
    const ny = /^\d+$/.test(y) ? Number(y) : undefined;
    if (nx !== undefined && ny !== undefined) {
      if (nx !== ny) return nx - ny;
    } else if (nx !== undefined) return -1;
    else if (ny !== undefined) return 1;
    else if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

interface Partial3 {
  readonly major: number | undefined;
  readonly minor: number | undefined;
  readonly patch: number | undefined;
  readonly pre: string;
}

function parsePartial(s: string): Partial3 | undefined {
  const m = PARTIAL.exec(s);
  if (!m) return undefined;
  const n = (x: string | undefined): number | undefined => (x === undefined || /^[xX*]$/.test(x) ? undefined : Number(x));
  const major = n(m[1]);
  const minor = major === undefined ? undefined : n(m[2]);
  const patch = minor === undefined ? undefined : n(m[3]);
  return { major, minor, patch, pre: patch === undefined ? '' : (m[4] ?? '') };
}

const v3 = (major: number, minor: number, patch: number, pre = ''): Version => ({ major, minor, patch, pre });

/** The comparators of one partial version after an operator (`>=22`, `^20.11`, `~1.2`, `22.x`). */
function expand(op: string, p: Partial3): Comparator[] | undefined {
  const { major, minor, patch, pre } = p;
  if (major === undefined) return op === '<' || op === '>' ? [{ op: '<', v: v3(0, 0, 0, '0') }] : [];
  const lo = v3(major, minor ?? 0, patch ?? 0, pre);
  // The first version above the partial (22 → 23.0.0-0, 22.1 → 22.2.0-0).
  const next = minor === undefined ? v3(major + 1, 0, 0, '0') : patch === undefined ? v3(major, minor + 1, 0, '0') : undefined;
  switch (op) {
    case '':
    case '=':
      return next === undefined ? [{ op: '=', v: lo }] : [{ op: '>=', v: lo }, { op: '<', v: next }];
    case '>=':
      return [{ op: '>=', v: lo }];
    case '>':
      return [next === undefined ? { op: '>', v: lo } : { op: '>=', v: next }];
    case '<':
      return [{ op: '<', v: next === undefined ? lo : v3(lo.major, lo.minor, lo.patch, '0') }];
    case '<=':
      return [next === undefined ? { op: '<=', v: lo } : { op: '<', v: next }];
    case '~':
      return [{ op: '>=', v: lo }, { op: '<', v: minor === undefined ? v3(major + 1, 0, 0, '0') : v3(major, minor + 1, 0, '0') }];
    case '^': {
      const upper = major > 0 || minor === undefined ? v3(major + 1, 0, 0, '0')
        : minor > 0 || patch === undefined ? v3(0, minor + 1, 0, '0')
        : v3(0, 0, patch + 1, '0');
      return [{ op: '>=', v: lo }, { op: '<', v: upper }];
    }
    default:
      return undefined;
  }
}

/** Parse a range; undefined when it is not one. */
export function parseRange(text: string): Range | undefined {
  const alternatives = text.trim().split(/\s*\|\|\s*/);
  const out: Comparator[][] = [];
  for (const alt of alternatives) {
    const hyphen = /^(\S+)\s+-\s+(\S+)$/.exec(alt);
    if (hyphen) {
      const a = parsePartial(hyphen[1]!);
      const b = parsePartial(hyphen[2]!);
      if (!a || !b) return undefined;
      out.push([...expand('>=', a)!, ...expand('<=', b)!]);
      continue;
    }
    // `>= 20` is `>=20`: glue an operator to the version after it.
    const words = alt.replace(/(<=|>=|[<>=~^])\s+/g, '$1').split(/\s+/).filter((w) => w !== '');
    const set: Comparator[] = [];
    for (const w of words.length === 0 ? ['*'] : words) {
      const m = /^(<=|>=|<|>|=|~>?|\^)?(.*)$/.exec(w)!;
      const p = parsePartial(m[2]!);
      const cs = p && expand((m[1] ?? '').replace('~>', '~'), p);
      if (!cs) return undefined;
      set.push(...cs);
    }
    out.push(set);
  }
  return out;
}

function test(c: Comparator, v: Version): boolean {
  const d = compareVersions(v, c.v);
  switch (c.op) {
    case '<': return d < 0;
    case '<=': return d <= 0;
    case '>': return d > 0;
    case '>=': return d >= 0;
    case '=': return d === 0;
  }
}

/** Whether v is in the range. A pre-release matches only a comparator naming that same major.minor.patch with a pre-release. */
export function satisfies(v: Version, range: Range): boolean {
  return range.some((set) => set.every((c) => test(c, v)) && (v.pre === '' || set.some((c) => c.v.pre !== '' && c.v.pre !== '0' && c.v.major === v.major && c.v.minor === v.minor && c.v.patch === v.patch)));
}

/** The highest version of the list in the range, or undefined. */
export function maxSatisfying(versions: readonly string[], range: Range): string | undefined {
  let best: Version | undefined;
  for (const s of versions) {
    const v = parseVersion(s);
    if (v && satisfies(v, range) && (!best || compareVersions(v, best) > 0)) best = v;
  }
  return best && formatVersion(best);
}
