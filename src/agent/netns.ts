/**
 * A network namespace per fixed-port instance (root on Linux). An app that listens on 3000 whatever
 * $PORT says cannot run twice on one network stack; in its own namespace it can, so old and new
 * revisions both listen on 3000 and the switch is the ordinary start-new / probe / switch / drain.
 *
 *   host ── veth pv<k>h 10.213.a.b+1/30 ═══ pv<k>n 10.213.a.b+2/30 ── namespace pilot-<k>: lo, the app
 *
 * Block k (0…16383) of 10.213.0.0/16 names the namespace, so `ip netns add pilot-<k>` failing with
 * "exists" is the allocation lock between agents on one machine. Only namespaces and addresses
 * Pilot created are touched. Commands are argv (never a shell); the app is started through
 * `nsenter --net=/run/netns/pilot-<k> -- argv` (same pid: nsenter execs the app). The record lives
 * in the instance's stateDir (`netns.json`), so an adopted instance keeps its namespace.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { fail } from '../core/errors.js';

export interface Netns {
  readonly name: string;
  readonly hostIf: string;
  readonly nsIf: string;
  readonly hostAddr: string;
  /** Where the app is reached (router, probes). */
  readonly nsAddr: string;
}

const IP_CANDIDATES = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'];
const NSENTER_CANDIDATES = ['/usr/bin/nsenter', '/bin/nsenter', '/usr/sbin/nsenter'];
const BLOCKS = 16384;
const FILE = 'netns.json';

const firstExisting = (paths: readonly string[]): string | undefined => paths.find((p) => existsSync(p));

function run(file: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${[file, ...args].join(' ')}: ${(stderr || err.message).trim()}`));
      else resolve(stdout);
    });
  });
}

/** The addresses of block k: [host side, namespace side]. Pure. */
export function blockAddresses(k: number): [string, string] {
  const base = k * 4;
  const third = Math.floor(base / 256);
  const fourth = base % 256;
  return [`10.213.${third}.${fourth + 1}`, `10.213.${third}.${fourth + 2}`];
}

/** The namespace command prefix for argv: `nsenter --net=/run/netns/NAME --`. Pure. */
export function wrapArgv(
  ns: Pick<Netns, 'name'>,
  argv: readonly string[],
  nsenter = firstExisting(NSENTER_CANDIDATES) ?? 'nsenter',
): string[] {
  return [nsenter, `--net=/run/netns/${ns.name}`, '--', ...argv];
}

/** Whether this agent can isolate fixed-port instances: root on Linux with `ip` and `nsenter`. */
export async function netnsSupport(): Promise<{ available: boolean; error?: string }> {
  if (process.env.PILOT_NETNS === '0') return { available: false, error: 'turned off (PILOT_NETNS=0)' };
  if (process.platform !== 'linux') return { available: false, error: 'not Linux' };
  if (process.getuid?.() !== 0) return { available: false, error: 'the agent does not run as root' };
  const ip = firstExisting(IP_CANDIDATES);
  if (!ip) return { available: false, error: 'no `ip` command (apt-get install iproute2)' };
  if (!firstExisting(NSENTER_CANDIDATES)) return { available: false, error: 'no `nsenter` command (apt-get install util-linux)' };
  try {
    await run(ip, ['netns', 'list']);
    return { available: true };
  } catch (e) {
    return { available: false, error: (e as Error).message };
  }
}

/** The namespace recorded in an instance's stateDir, if any. */
export function readNetns(stateDir: string): Netns | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir, FILE), 'utf8')) as Netns;
  } catch {
    return undefined;
  }
}

/** The instance's recorded namespace if it still exists; a record whose namespace is gone (deleted by hand) is cleaned up. */
export async function existingNetns(stateDir: string): Promise<Netns | undefined> {
  const ns = readNetns(stateDir);
  if (!ns) return undefined;
  if (existsSync(`/run/netns/${ns.name}`)) return ns;
  await deleteNetns(stateDir);
  return undefined;
}

/** Create a namespace with a veth pair for an instance and record it in its stateDir. */
export async function createNetns(stateDir: string): Promise<Netns> {
  const ip = firstExisting(IP_CANDIDATES) ?? 'ip';
  for (let attempt = 0; attempt < 20; attempt++) {
    const k = randomInt(BLOCKS);
    const name = `pilot-${k}`;
    try {
      await run(ip, ['netns', 'add', name]);
    } catch {
      continue; // taken (by this or another agent on the machine): another block
    }
    const [hostAddr, nsAddr] = blockAddresses(k);
    const ns: Netns = { name, hostIf: `pv${k}h`, nsIf: `pv${k}n`, hostAddr, nsAddr };
    // Recorded before the links exist, so a failure half-way is cleaned up by deleteNetns.
    writeRecord(stateDir, ns);
    try {
      await run(ip, ['link', 'add', ns.hostIf, 'type', 'veth', 'peer', 'name', ns.nsIf, 'netns', name]);
      await run(ip, ['addr', 'add', `${hostAddr}/30`, 'dev', ns.hostIf]);
      await run(ip, ['link', 'set', ns.hostIf, 'up']);
      await run(ip, ['-n', name, 'link', 'set', 'lo', 'up']);
      await run(ip, ['-n', name, 'addr', 'add', `${nsAddr}/30`, 'dev', ns.nsIf]);
      await run(ip, ['-n', name, 'link', 'set', ns.nsIf, 'up']);
      // The host's own addresses are reachable through the veth (not its 127.0.0.1: that is the namespace's).
      await run(ip, ['-n', name, 'route', 'add', 'default', 'via', hostAddr]);
    } catch (e) {
      await deleteNetns(stateDir).catch(() => undefined);
      throw fail.cannotSetUpNetwork({ message: (e as Error).message }, { cause: e });
    }
    return ns;
  }
  throw fail.noFreeNetworkNamespace();
}

function writeRecord(stateDir: string, ns: Netns): void {
  const file = join(stateDir, FILE);
  writeFileSync(file + '.tmp', JSON.stringify(ns), { mode: 0o600 });
  renameSync(file + '.tmp', file);
}

/** Pids of every process inside the namespace. */
export async function netnsPids(name: string): Promise<number[]> {
  const ip = firstExisting(IP_CANDIDATES) ?? 'ip';
  const out = await run(ip, ['netns', 'pids', name]).catch(() => '');
  return out
    .split(/\s+/)
    .filter((p) => /^\d+$/.test(p))
    .map(Number);
}

/**
 * SIGKILL whatever still runs in the namespace: a child that left the instance's process group
 * (setsid, double fork) cannot outlive the stop. Returns how many were killed.
 */
export async function killNetnsProcesses(name: string): Promise<number> {
  let killed = 0;
  for (let round = 0; round < 5; round++) {
    const pids = await netnsPids(name);
    if (pids.length === 0) return killed;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {
        // gone meanwhile
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return killed;
}

/** Kill what is left inside, delete the namespace (its veth end, and so the pair, goes with it) and the record. */
export async function deleteNetns(stateDir: string): Promise<void> {
  const ns = readNetns(stateDir);
  if (!ns) return;
  const ip = firstExisting(IP_CANDIDATES) ?? 'ip';
  await killNetnsProcesses(ns.name);
  await run(ip, ['netns', 'del', ns.name]).catch(() => undefined);
  await run(ip, ['link', 'del', ns.hostIf]).catch(() => undefined); // gone already when the pair went
  rmSync(join(stateDir, FILE), { force: true });
}
