/**
 * How the process runtime contains an instance: the start wrapper that puts it in its cgroup and
 * drops to the app's uid, the command lookup that keeps start errors precise, and the /proc
 * fallbacks (tree RSS, descendants by environment marker) for machines without cgroups.
 */
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { basename, isAbsolute, join, resolve } from 'node:path';
import type { AppIdentity } from '../isolation.js';
import { allProcStats, instanceTree, type ProcStat } from '../../os/proc.js';

/**
 * The start wrapper, run by /bin/sh as root: write its own pid into every cgroup.procs given, then
 * exec the app (through setpriv when it switches user). So the app is inside its cgroups before its
 * first instruction, and everything it forks is too. No text of the app goes into the script: the
 * paths and the command are positional parameters ("$@"), never parsed by the shell.
 */
const WRAPPER = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n - 1)); done; exec "$@"';

/** Exit code of the wrapper when it could not join a cgroup. */
export const WRAPPER_CGROUP_FAILED = 125;

/** argv to spawn for an instance: [file, ...args]. Plain argv when nothing needs the wrapper. */
export function startArgv(argv: readonly string[], procsFiles: readonly string[], user: AppIdentity | undefined): string[] {
  const drop =
    user === undefined ? [] : ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--no-new-privs', '--'];
  if (procsFiles.length === 0 && user === undefined) return [...argv];
  // Joining a network namespace needs root: a fixed-port instance's `nsenter --net=… --` (netns.ts)
  // goes before the privileges are dropped, so the app itself still runs as its own uid.
  const ns = netnsPrefix(argv);
  return ['/bin/sh', '-c', WRAPPER, 'pilot-start', String(procsFiles.length), ...procsFiles, ...ns, ...drop, ...argv.slice(ns.length)];
}

/** The `nsenter --net=PATH --` that netns.ts puts before a fixed-port instance's argv, or []. */
export function netnsPrefix(argv: readonly string[]): readonly string[] {
  return argv.length >= 3 && basename(argv[0]!) === 'nsenter' && argv[1]!.startsWith('--net=') && argv[2] === '--' ? argv.slice(0, 3) : [];
}

/** An fs-style error, so the runtime's spawnError gives the usual messages. */
function errno(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

/** Whether `user` may execute `file` by its mode bits (root: any x bit). */
function executableBy(file: string, user: AppIdentity | undefined): boolean {
  const st = statSync(file);
  if (!st.isFile()) return false;
  if (user === undefined) {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  }
  if (st.uid === user.uid) return (st.mode & 0o100) !== 0;
  if (st.gid === user.gid) return (st.mode & 0o010) !== 0;
  return (st.mode & 0o001) !== 0;
}

/**
 * Look the command up as execvp will (on the app env's PATH, relative to cwd when it has a slash),
 * so a missing or non-executable command is a start error with the usual message, not exit 127 of
 * the wrapper. Throws an ENOENT/EACCES error.
 */
export function checkCommand(argv0: string, envPath: string | undefined, cwd: string, user: AppIdentity | undefined): void {
  const candidates = argv0.includes('/')
    ? [isAbsolute(argv0) ? argv0 : resolve(cwd, argv0)]
    : (envPath ?? '')
        .split(':')
        .filter((d) => d !== '')
        .map((d) => join(resolve(cwd, d), argv0));
  let sawFile = false;
  for (const c of candidates) {
    try {
      if (executableBy(c, user)) return;
      sawFile = true;
    } catch {
      // not there
    }
  }
  throw sawFile ? errno('EACCES', `spawn ${argv0} EACCES`) : errno('ENOENT', `spawn ${argv0} ENOENT`);
}

/**
 * The no-cgroup memory check, one /proc scan for all instances: those whose process tree (group,
 * session, descendants) uses more resident memory than its limit, with the pids to kill.
 */
export function overMemory(
  instances: readonly { key: string; leader: number; startTime: string; memoryMb: number }[],
): { key: string; pids: number[] }[] {
  const stats = allProcStats();
  const out: { key: string; pids: number[] }[] = [];
  for (const i of instances) {
    if (stats.get(i.leader)?.startTime !== i.startTime) continue; // gone, or the pid names another process
    const members = instanceTree(i.leader, stats);
    if (treeRssBytes(members, stats) > i.memoryMb * 1024 * 1024) out.push({ key: i.key, pids: members });
  }
  return out;
}

/** Resident memory of a set of processes, in bytes. */
export function treeRssBytes(pids: readonly number[], stats: Map<number, ProcStat>): number {
  const page = 4096; // x86-64 and arm64 Linux default; /proc has no cheaper way to ask
  let pages = 0;
  for (const p of pids) pages += stats.get(p)?.rssPages ?? 0;
  return pages * page;
}

/**
 * Processes of `uid` carrying the instance's environment marker (PILOT_INSTANCE=<id>): finds detached descendants that left the session and lost their parent chain. A
 * process that cleared its environment escapes (cgroups close that gap).
 */
export function markedProcesses(instanceId: string, uid: number): number[] {
  const marker = Buffer.from(`\0PILOT_INSTANCE=${instanceId}\0`);
  const out: number[] = [];
  for (const pid of allProcStats().keys()) {
    if (pid === process.pid) continue;
    try {
      if (statSync(`/proc/${pid}`).uid !== uid) continue;
      const env = Buffer.concat([Buffer.from([0]), readFileSync(`/proc/${pid}/environ`), Buffer.from([0])]);
      if (env.includes(marker)) out.push(pid);
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

/**
 * Every process of an instance without cgroups: its tree (group, session, descendants) and, when it
 * runs as its own app uid, that uid's processes carrying its marker (never another user's: a
 * marker alone could be copied by anyone).
 */
export function fallbackMembers(leader: number, instanceId: string, uid: number | undefined): number[] {
  return [...new Set([...instanceTree(leader), ...(uid === undefined ? [] : markedProcesses(instanceId, uid))])];
}
