/**
 * Which TCP ports an instance's processes listen on, read from /proc (Linux): so that a health
 * check refused on $PORT can say "the app listens on 127.0.0.1:8000 instead", the commonest reason
 * a public sample app never gets ready (Heroku's "failed to bind to $PORT"). Best effort: any
 * error gives an empty list, never a throw.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { instanceTree, liveGroupMembers } from '../os/proc.js';

export interface Listener {
  readonly address: string;
  readonly port: number;
}

/** Listening sockets (state 0A) of a /proc/net/tcp or tcp6 table, by socket inode. Pure. */
export function parseProcNetTcp(text: string): Map<string, Listener> {
  const out = new Map<string, Listener>();
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== '0A') continue;
    const [hexAddr, hexPort] = (f[1] ?? '').split(':');
    if (!hexAddr || !hexPort) continue;
    out.set(f[9]!, { address: decodeAddress(hexAddr), port: parseInt(hexPort, 16) });
  }
  return out;
}

/** /proc/net/tcp writes addresses as host-order (little-endian) 32-bit words. */
function decodeAddress(hex: string): string {
  const words = hex.match(/.{8}/g) ?? [];
  const bytes = words.flatMap((w) => (w.match(/../g) ?? []).reverse().map((b) => parseInt(b, 16)));
  if (bytes.length === 4) return bytes.join('.');
  if (bytes.every((b) => b === 0)) return '::';
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return bytes.slice(12).join('.');
  if (bytes.slice(0, 15).every((b) => b === 0) && bytes[15] === 1) return '::1';
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':');
}

/** The TCP ports the processes of group `pgid` listen on (in their own network namespace). */
export async function listeningPorts(pgid: number): Promise<Listener[]> {
  const found = new Map<string, Listener>();
  for (const pid of liveGroupMembers(pgid)) {
    const inodes = new Set<string>();
    for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
      const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
      if (m) inodes.add(m[1]!);
    }
    if (inodes.size === 0) continue;
    for (const table of ['tcp', 'tcp6']) {
      const listeners = parseProcNetTcp(await readFile(`/proc/${pid}/net/${table}`, 'utf8').catch(() => ''));
      for (const [inode, l] of listeners) if (inodes.has(inode)) found.set(`${l.address}:${l.port}`, l);
    }
  }
  return [...found.values()];
}

/** The words added to a refused health check when the app listens elsewhere. Pure. */
export function elsewhereNote(listeners: readonly Listener[], port: number): string | undefined {
  if (listeners.length === 0 || listeners.some((l) => l.port === port)) return undefined;
  const shown = listeners
    .slice(0, 3)
    .map((l) => (l.address.includes(':') ? `[${l.address}]:${l.port}` : `${l.address}:${l.port}`))
    .join(', ');
  // A fixed port bound to loopback only is not reachable in its own network namespace (where a
  // fixed-port instance runs): then only listening on PORT helps.
  const loopbackOnly = listeners.every((l) => l.address.startsWith('127.') || l.address === '::1');
  return `the app listens on ${shown}, not on PORT=${port}: make it listen on process.env.PORT${loopbackOnly ? '' : `, or set \`port: ${listeners[0]!.port}\` in pilot.yaml`}`;
}

/**
 * Whether the socket listening on `port` (in this network namespace) belongs to process group
 * `pgid`: true or false when /proc shows a listener on it, undefined when it shows none (or cannot
 * be read). Agents on one machine allocate ports independently, so the kernel can hand one port to
 * two apps; then the other app's answer must not make this instance ready.
 */
export async function portOwnedBy(pgid: number, port: number): Promise<boolean | undefined> {
  const listening = new Set<string>();
  for (const table of ['tcp', 'tcp6']) {
    const listeners = parseProcNetTcp(await readFile(`/proc/self/net/${table}`, 'utf8').catch(() => ''));
    for (const [inode, l] of listeners) if (l.port === port) listening.add(inode);
  }
  if (listening.size === 0) return undefined;
  // The instance's whole tree: its group, its session and every descendant (one that left the group too).
  for (const pid of instanceTree(pgid)) {
    for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
      const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
      if (m && listening.has(m[1]!)) return true;
    }
  }
  return false;
}
