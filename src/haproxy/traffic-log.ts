/**
 * HAProxy's per-request figures for the router process's traffic windows (`pilot top`, canary
 * analysis, the autoscaler), which the embedded router records itself.
 *
 * HAProxy sends one log line per request (`format raw`: no syslog header; a UDP datagram to this
 * socket on 127.0.0.1) in the frontend's log format (config.ts `trafficLogLines`). UDP, because
 * each HAProxy thread sends its own lines without a lock: through a `ring` section forwarded over
 * TCP the lines cost HAProxy 2 threads ~9 µs more per request (its ring lock), over UDP ~1 µs
 * (measured side by side; README "HAProxy as the router"). A datagram the kernel could not queue
 * (this process busy longer than its socket buffer lasts) is lost; the kernel counts those
 * (`/proc/net/udp`, `lost`), and /metrics shows them:
 *
 *   <key> <backend: app_<app>, pin<k>_<app>, or the frontend's name> <server address:port or -:-> <status> <Ta ms> <termination state>
 *
 * The address names the instance (unique per instance: several on one node differ by port), which the
 * router maps to its revision from the tables it applied, so a line that arrives after a rollout
 * moved a server slot to another instance is still counted for the instance that served it. The
 * key (random per process, in the 0600 configuration only) keeps out lines that another local
 * process (an app) could send to the port to bend the figures canary analysis decides on.
 */
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';

/** nginx's "client closed request": what the embedded router records when the client left first. */
const CLIENT_CLOSED = 499;

/** Where the lines go: the router process's traffic sink (router/metrics.ts). */
export interface TrafficLineSink {
  request(app: string, revision: number | undefined, code: number, seconds: number): void;
}

/** One parsed line, or undefined for a line that is not ours or not well formed. */
export interface TrafficLine {
  readonly app: string;
  /** host:port of the instance that answered, undefined when none did (HAProxy's own answer). */
  readonly server: string | undefined;
  readonly code: number;
  readonly ms: number;
}

export function parseTrafficLine(line: string, key: string): TrafficLine | undefined {
  const f = line.trimEnd().split(' ');
  if (f.length !== 6 || f[0] !== key) return undefined;
  const [, backend, server, status, ta, state] = f as [string, string, string, string, string, string];
  // config.ts names the backends app_<app> and pin<k>_<app>; anything else is the frontend (no app: an unknown host).
  const app = /^(?:app|pin\d+)_(.+)$/.exec(backend)?.[1] ?? '';
  const ms = Number(ta);
  let code = Number(status);
  if (!Number.isInteger(code) || !Number.isFinite(ms)) return undefined;
  // Termination state: C… = the client aborted (HAProxy logs -1 or what it had when the client left).
  if (state.startsWith('C') || code < 0) code = CLIENT_CLOSED;
  return { app, server: server.startsWith('-') ? undefined : server, code, ms: Math.max(0, ms) };
}

/** Instance address → (app, revision), from the tables applied; addresses gone from the table are kept a while. */
export class InstanceRevisions {
  readonly #by = new Map<string, { app: string; revision: number; seenAt: number }>();
  constructor(private readonly keepMs = 600_000) {}

  /** The instances of one table. `now`: milliseconds of a monotonic clock. */
  update(instances: Iterable<{ app: string; revision: number; host: string; port: number }>, now: number): void {
    for (const i of instances) this.#by.set(addressKey(i.host, i.port), { app: i.app, revision: i.revision, seenAt: now });
    for (const [k, v] of this.#by) if (now - v.seenAt > this.keepMs) this.#by.delete(k);
  }

  revisionOf(app: string, server: string): number | undefined {
    const v = this.#by.get(server);
    return v !== undefined && v.app === app ? v.revision : undefined;
  }
}

/** host:port as HAProxy's %si:%sp writes it (IPv6 without brackets). */
export function addressKey(host: string, port: number): string {
  return `${host.replace(/^\[|\]$/g, '')}:${port}`;
}

export class TrafficLog {
  readonly key = randomBytes(12).toString('hex');
  readonly revisions = new InstanceRevisions();
  readonly #socket: Socket;
  #dropped = 0;

  private constructor(private readonly sink: TrafficLineSink) {
    // As much queue as the kernel allows (net.core.rmem_max caps it): lines wait there while the loop is busy.
    this.#socket = createSocket({ type: 'udp4', recvBufferSize: 16 * 1024 * 1024 });
    this.#socket.on('message', (msg) => this.#onLine(msg.toString('latin1')));
    this.#socket.on('error', () => undefined); // nothing to answer on a datagram socket
  }

  /** Listen on 127.0.0.1 (a free port) for HAProxy's lines. */
  static async start(sink: TrafficLineSink): Promise<TrafficLog> {
    const t = new TrafficLog(sink);
    await new Promise<void>((resolve, reject) => {
      t.#socket.once('error', reject);
      t.#socket.bind(0, '127.0.0.1', () => {
        t.#socket.off('error', reject);
        resolve();
      });
    });
    return t;
  }

  get port(): number {
    return this.#socket.address().port;
  }

  /** Lines left out: HAProxy's own notices (a proxy stopping at a reload), and lines of anyone without the key. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Lines the kernel dropped because this socket's queue was full (its `drops` in /proc/net/udp). */
  lost(procNetUdp = '/proc/net/udp'): number {
    try {
      const local = `0100007F:${this.port.toString(16).toUpperCase().padStart(4, '0')}`;
      for (const line of readFileSync(procNetUdp, 'utf8').split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f[1] === local) return Number(f[f.length - 1]) || 0;
      }
    } catch {
      // no /proc: nothing known
    }
    return 0;
  }

  #onLine(line: string): void {
    const l = parseTrafficLine(line, this.key);
    if (l === undefined) {
      this.#dropped++;
      return;
    }
    const revision = l.server === undefined ? undefined : this.revisions.revisionOf(l.app, l.server);
    this.sink.request(l.app, revision, l.code, l.ms / 1000);
  }

  close(): void {
    try {
      this.#socket.close();
    } catch {
      // already closed
    }
  }
}
