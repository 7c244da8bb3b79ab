/**
 * App isolation on the process runtime: which unprivileged uid each app runs as, what this machine
 * offers (user switch, cgroups), and the file modes that keep $PILOT_HOME private.
 *
 * Uids are dynamic, like systemd's DynamicUser: one per app from a range (61000–65000 by default,
 * PILOT_APP_UID_RANGE=FIRST-LAST), gid = uid, no /etc/passwd entry. The choice is recorded in the
 * agent's `uids.json` (0600), so an app keeps its uid across agent restarts and its files stay its
 * own. A new app probes from a point derived from its name and the agent home, skipping uids that
 * are recorded, listed in /etc/passwd or /etc/group, or own a running process (another agent on
 * the same machine may use the range too).
 */
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectCgroups, type CgroupLayout } from './cgroups.js';

export interface AppIdentity {
  readonly uid: number;
  readonly gid: number;
}

/** What the node reports as `runtimes.process.isolation`. */
export interface IsolationReport {
  readonly user: boolean;
  readonly cgroup: boolean;
  /** v1, v2 or none. */
  readonly cgroupVersion?: string | undefined;
  /** What is missing and how to get it; absent when nothing is. */
  readonly reason?: string | undefined;
}

export interface IsolationSettings {
  /** Run apps as their own uid (only possible as root). */
  readonly user: boolean;
  readonly cgroups: CgroupLayout;
  readonly report: IsolationReport;
}

/** Decide what this agent can do: per-app users when root (PILOT_APP_USERS=off turns it off), cgroups when the kernel lets us. */
export function detectIsolation(env: NodeJS.ProcessEnv = process.env, isRoot = process.getuid?.() === 0): IsolationSettings {
  const user = isRoot && env.PILOT_APP_USERS !== 'off';
  const cgroups: CgroupLayout = isRoot ? detectCgroups() : { kind: 'none', reason: 'not running as root' };
  const missing: string[] = [];
  if (!user) missing.push(isRoot ? 'apps run as root (PILOT_APP_USERS=off)' : "apps run as the agent's own user (the agent is not root)");
  if (cgroups.kind === 'none')
    missing.push(`no cgroup limits (${cgroups.reason}): memory is enforced by polling RSS, descendants found through /proc`);
  const reason =
    missing.length === 0
      ? undefined
      : `${missing.join('; ')}. For full isolation run the agent as root on a machine with cgroups, or use \`runtime: docker\`.`;
  return { user, cgroups, report: { user, cgroup: cgroups.kind !== 'none', cgroupVersion: cgroups.kind, reason } };
}

function uidRange(env: NodeJS.ProcessEnv): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(env.PILOT_APP_UID_RANGE ?? '');
  if (m) {
    const a = Number(m[1]);
    const b = Number(m[2]);
    if (a >= 1000 && b >= a && b < 2 ** 31) return [a, b];
  }
  return [61000, 65000];
}

/** Ids named in /etc/passwd and /etc/group: never handed out. */
function systemIds(): Set<number> {
  const out = new Set<number>();
  for (const f of ['/etc/passwd', '/etc/group']) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const n = Number(line.split(':')[2]);
      if (Number.isInteger(n)) out.add(n);
    }
    if (f === '/etc/passwd') {
      for (const line of text.split('\n')) {
        const g = Number(line.split(':')[3]);
        if (Number.isInteger(g)) out.add(g);
      }
    }
  }
  return out;
}

/** Uids that own a running process (from /proc/PID/status "Uid:" real uid). */
function uidsInUse(): Set<number> {
  const out = new Set<number>();
  let names: string[] = [];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${n}/status`, 'utf8'));
      if (m) out.add(Number(m[1]));
    } catch {
      // gone
    }
  }
  return out;
}

/** Pure: the first free uid probing from a start point derived from `seed`. */
export function pickUid(seed: string, range: [number, number], taken: (uid: number) => boolean): number | undefined {
  const size = range[1] - range[0] + 1;
  const start = createHash('sha256').update(seed).digest().readUInt32BE(0) % size;
  for (let i = 0; i < size; i++) {
    const uid = range[0] + ((start + i) % size);
    if (!taken(uid)) return uid;
  }
  return undefined;
}

/** The agent's record of app → uid (`uids.json` in the agent home). */
export class AppUids {
  private readonly map: Map<string, number>;
  private readonly range: [number, number];

  constructor(
    private readonly file: string,
    private readonly seed: string,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.range = uidRange(env);
    let saved: Record<string, unknown> = {};
    try {
      saved = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch {
      // first start, or unreadable: start empty (uids are re-derived the same way for most apps)
    }
    this.map = new Map(Object.entries(saved).filter((e): e is [string, number] => Number.isInteger(e[1])));
  }

  /** The app's uid/gid, allocating and recording one on first use. */
  identity(app: string): AppIdentity {
    let uid = this.map.get(app);
    if (uid === undefined) {
      const recorded = new Set(this.map.values());
      const system = systemIds();
      let busy: Set<number> | undefined;
      const picked = pickUid(`${this.seed}\0${app}`, this.range, (u) => recorded.has(u) || system.has(u) || (busy ??= uidsInUse()).has(u));
      if (picked === undefined) throw new Error(`no free uid left in ${this.range[0]}-${this.range[1]} (PILOT_APP_UID_RANGE)`);
      uid = picked;
      this.map.set(app, uid);
      const tmp = `${this.file}.tmp`;
      writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.map)), { mode: 0o600 });
      renameSync(tmp, this.file);
    }
    return { uid, gid: uid };
  }

  /** The uid recorded for an app, if any (no allocation). */
  get(app: string): AppIdentity | undefined {
    const uid = this.map.get(app);
    return uid === undefined ? undefined : { uid, gid: uid };
  }
}

/**
 * Make an unpacked tree (a release, a Node.js runtime) readable and traversable by every app uid
 * and writable by none: owner root, folders 0755, files 0644 (0755 if the owner could execute).
 * Symbolic links are left as they are (their own mode is meaningless; their target is in the tree).
 */
export function shareTree(dir: string): void {
  const walk = (p: string): void => {
    const st = lstatSync(p);
    if (st.isSymbolicLink()) return;
    if (st.uid !== 0 || st.gid !== 0) chownSync(p, 0, 0);
    if (st.isDirectory()) {
      if ((st.mode & 0o7777) !== 0o755) chmodSync(p, 0o755);
      for (const n of readdirSync(p)) walk(join(p, n));
    } else {
      const mode = st.mode & 0o100 ? 0o755 : 0o644;
      if ((st.mode & 0o7777) !== mode) chmodSync(p, mode);
    }
  };
  walk(dir);
}

/** Folders an app uid passes through but cannot list (search permission only). */
export function traversable(dir: string): void {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o711);
}
