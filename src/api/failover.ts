/**
 * Which control-plane replica to talk to, when a client is given several (`--server a,b,c`). One
 * `ServerChooser` per client process part (the agent's link and its artifact downloads share one).
 *
 *   run(attempt) ──► attempt(current) ──ok──────────────────────────────► stay on it, return
 *                         │ connection refused / reset / timeout / 503
 *                         ▼
 *                  idempotent, or certainly not received? ──no──► report the error (move on for next time)
 *                         │ yes
 *                         ▼
 *                  next address (round robin) … a whole round failed ──► everyServerFailed,
 *                                                                   listing each address and its answer;
 *                                                                   the next run waits a back-off first
 *
 * Rules:
 * - One address: the attempt runs once, as before this existed: no retry, no back-off, its own error.
 * - Stay on the address that works; move only when it fails (no preference to go back to the first).
 * - A request that is not idempotent goes to another address only when it certainly did not arrive
 *   (connection refused, host not found, reset before a byte of it was written); otherwise its
 *   error is reported, since the replica may have acted on it.
 * - A 503 answer is a replica saying it cannot serve now (shutting down, not ready): idempotent
 *   requests move on; others report the server's answer (it was received).
 * - After a whole round failed, the next call waits 200 ms, doubling per failed round up to 2 s,
 *   so a total outage does not spin; any success resets it.
 * - An abort of the caller's own signal is never a failure of the address: it is thrown as is.
 */
import { fail } from '../core/errors.js';
import { wasNotSent } from './http-call.js';
import { parseServerList } from './server-list.js';

/** How an attempt failed, as far as failing over is concerned. */
export type FailureKind = 'not-sent' | 'no-answer';

/** Error codes of a connection that never carried the request. */
const NOT_SENT = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
]);
/** Error codes and names of a connection that went away or never answered: the request may have arrived. */
const NO_ANSWER = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_ABORTED',
  'TimeoutError',
  'AbortError',
]);

const BACKOFF_MIN_MS = 200;
const BACKOFF_MAX_MS = 2000;

/**
 * Whether `err` (or an error in its `cause` chain) is a failure of the connection, and which kind;
 * undefined for anything else (an answer from the server, a bad argument): those are final.
 */
export function failureOf(err: unknown): FailureKind | undefined {
  let kind: FailureKind | undefined;
  let e: unknown = err;
  for (let depth = 0; depth < 6 && typeof e === 'object' && e !== null; depth++) {
    if (wasNotSent(e)) return 'not-sent';
    const { code, name } = e as { code?: unknown; name?: unknown };
    if (typeof code === 'string' && NOT_SENT.has(code)) return 'not-sent';
    if ((typeof code === 'string' && NO_ANSWER.has(code)) || (typeof name === 'string' && NO_ANSWER.has(name))) kind = 'no-answer';
    e = (e as { cause?: unknown }).cause;
  }
  if (kind) return kind;
  // node:http says "socket hang up" with ECONNRESET (caught above); fetch says "fetch failed" with a cause.
  return undefined;
}

/** A short description of a failure for the "every address failed" list. */
export function describeFailure(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; depth < 6 && typeof e === 'object' && e !== null; depth++) {
    const { code, name } = e as { code?: unknown; name?: unknown };
    if (code === 'ECONNREFUSED') return 'connection refused';
    if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return 'connection reset';
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host not found';
    if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'host unreachable';
    if (name === 'TimeoutError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'ETIMEDOUT')
      return 'no answer in time';
    if (code === 'UND_ERR_CONNECT_TIMEOUT') return 'connect timed out';
    e = (e as { cause?: unknown }).cause;
  }
  return (err as Error)?.message ?? String(err);
}

export interface RunOptions<T> {
  /** Whether sending the request twice is harmless (GET, PUT, DELETE, a level-triggered sync). */
  readonly idempotent: boolean;
  /** For an answer: a description when it is a replica's "cannot serve now" (a 503), else undefined. */
  readonly unavailable?: (answer: T) => string | undefined;
  /** For a thrown error: a description when it is a replica's "cannot serve now" (a 503 made into an error), else undefined. */
  readonly refusal?: (err: unknown) => string | undefined;
  /** Release an answer that is not used (drain its body) before moving on. */
  readonly discard?: (answer: T) => Promise<void> | void;
  /** The caller's own abort: an attempt failing because of it is thrown as is. */
  readonly signal?: AbortSignal | undefined;
}

export class ServerChooser {
  private at = 0;
  private failedRounds = 0;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly onFailure: ((server: string, why: string) => void) | undefined;

  constructor(
    readonly servers: readonly string[],
    opts: {
      sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
      /** Told of each address that failed (several addresses only): a log line for the operator. */
      onFailure?: (server: string, why: string) => void;
    } = {},
  ) {
    if (servers.length === 0) throw new RangeError('a ServerChooser needs at least one address');
    this.sleep = opts.sleep ?? abortableSleep;
    this.onFailure = opts.onFailure;
  }

  /**
   * A chooser for what a user typed: a comma-separated list (each entry checked, see
   * server-list.ts), or one address taken as it is (exactly as before lists existed).
   */
  static from(text: string, source = '--server', onFailure?: (server: string, why: string) => void): ServerChooser {
    return new ServerChooser(text.includes(',') ? parseServerList(text, source) : [text], onFailure ? { onFailure } : {});
  }

  /** The address the next request goes to. */
  get current(): string {
    return this.servers[this.at]!;
  }

  /** The addresses as one string, as a user would give them. */
  toString(): string {
    return this.servers.join(',');
  }

  /** Mark the current address as failing (a stream that dropped): the next request goes to the next one. */
  failed(server = this.current): void {
    const i = this.servers.indexOf(server);
    if (i === this.at && this.servers.length > 1) this.at = (this.at + 1) % this.servers.length;
  }

  /** Run `attempt` against the current address, failing over as the rules above say. */
  async run<T>(attempt: (server: string) => Promise<T>, o: RunOptions<T>): Promise<T> {
    const n = this.servers.length;
    if (n === 1) return attempt(this.servers[0]!);
    if (this.failedRounds > 0) await this.sleep(Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (this.failedRounds - 1)), o.signal);
    const start = this.at;
    const tried: string[] = [];
    let lastError: unknown;
    for (let i = 0; i < n; i++) {
      const index = (start + i) % n;
      const server = this.servers[index]!;
      let answer: T;
      try {
        answer = await attempt(server);
      } catch (err) {
        if (o.signal?.aborted) throw err;
        const refused = o.refusal?.(err);
        if (refused !== undefined) {
          this.at = (index + 1) % n;
          this.onFailure?.(server, refused);
          if (!o.idempotent) throw err;
          tried.push(`${server} (${refused})`);
          lastError = err;
          continue;
        }
        const kind = failureOf(err);
        if (kind === undefined) throw err; // an answer, or a mistake of ours: the same on every address
        this.at = (index + 1) % n;
        this.onFailure?.(server, describeFailure(err));
        if (!o.idempotent && kind !== 'not-sent')
          throw fail.mayHaveArrived({ baseUrl: server, cause: describeFailure(err) }, { cause: err });
        tried.push(`${server} (${describeFailure(err)})`);
        lastError = err;
        continue;
      }
      const why = o.unavailable?.(answer);
      if (why === undefined) {
        this.at = index;
        this.failedRounds = 0;
        return answer;
      }
      this.at = (index + 1) % n;
      this.onFailure?.(server, why);
      if (!o.idempotent) return answer; // received: the caller reports the replica's answer
      await o.discard?.(answer);
      tried.push(`${server} (${why})`);
    }
    this.failedRounds++;
    throw fail.everyServerFailed({ attempts: tried.join(', ') }, lastError === undefined ? undefined : { cause: lastError });
  }
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
