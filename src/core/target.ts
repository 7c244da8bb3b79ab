/**
 * Deploy targets (`pilot targets add NAME --docker URL`): pure parsing and the port scheme of a
 * Swarm target. Where a target's engine is, and which ports its services' tasks take.
 *
 * Ports. Everything runs with host networking, so the replicas of one service on one host need
 * distinct ports, and so do the services (revisions) of a rollout, which run side by side. Each
 * service takes a **port block** of 100 ports from the target's range; a task's port is the
 * block's prefix followed by its two-digit slot: block 21300, slot 7 → PORT=21307. Swarm's
 * templates have no arithmetic, but they concatenate: the service's env holds
 * `PORT=213{{if lt (len .Task.Slot) 2}}0{{end}}{{.Task.Slot}}`, so a re-created task (same slot)
 * listens on the same port. Slots 1–99: a revision runs at most 99 replicas.
 */
import { fail } from './errors.js';

export type DockerEndpoint = { readonly socketPath: string } | { readonly host: string; readonly port: number };

/** unix:///path/to/docker.sock or tcp://host:port (plain HTTP: a loopback or a private link). */
export function parseDockerUrl(value: string): DockerEndpoint {
  const unix = /^unix:\/\/(\/[^\0]{1,4000})$/.exec(value);
  if (unix) return { socketPath: unix[1]! };
  const tcp = /^tcp:\/\/([A-Za-z0-9.-]{1,253}|\[[0-9a-fA-F:.]{2,45}\]):(\d{1,5})\/?$/.exec(value);
  if (tcp) {
    const port = Number(tcp[2]);
    if (port >= 1 && port <= 65535) return { host: tcp[1]!.replace(/^\[|\]$/g, ''), port };
  }
  throw fail.targetDockerUrl({ value });
}

export interface PortRange {
  readonly from: number;
  readonly to: number;
}

/** Default blocks: 20000–31999, below Linux's ephemeral range (32768+), where agents' ports come from. */
export const DEFAULT_TARGET_PORTS: PortRange = { from: 20000, to: 31900 };

/** `FROM-TO`: the first ports of the first and last block, multiples of 100. */
export function parsePortRange(value: string): PortRange {
  const m = /^(\d{4,5})-(\d{4,5})$/.exec(value);
  const from = Number(m?.[1]);
  const to = Number(m?.[2]);
  if (!m || from % 100 !== 0 || to % 100 !== 0 || from < 1000 || to > 65400 || from >= to) throw fail.targetPortRange({ value });
  return { from, to };
}

/** The largest slot a block holds (two digits after the prefix; slot 0 does not exist). */
export const MAX_SLOT = 99;

/**
 * The first free block of the range after `after` (wrapping around), given the blocks live services
 * hold; undefined when all are taken. Going round rather than lowest-first: a service just removed
 * may still have tasks stopping on its ports (up to their stop grace period), and its block is the
 * last one to be handed out again.
 */
export function freeBlock(range: PortRange, taken: ReadonlySet<number>, after?: number): number | undefined {
  const count = (range.to - range.from) / 100 + 1;
  const start = after === undefined || after < range.from || after > range.to ? 0 : (after - range.from) / 100 + 1;
  for (let i = 0; i < count; i++) {
    const b = range.from + ((start + i) % count) * 100;
    if (!taken.has(b)) return b;
  }
  return undefined;
}

/** A task's port in a block. */
export function slotPort(block: number, slot: number): number {
  return block + slot;
}

/** The Swarm template of PORT for a block: the block's prefix, then the slot on two digits. */
export function portTemplate(block: number): string {
  return `PORT=${block / 100}{{if lt (len .Task.Slot) 2}}0{{end}}{{.Task.Slot}}`;
}
