/**
 * A typed client of the REST API, used by the CLI and by the pipeline runner (which runs in the
 * CLI for `pilot run` and in the server for webhooks: either way it talks to the API, never to
 * the store). Errors come back as PilotError with the server's code, message and hint.
 */
import { fromBody, type PilotError, fail } from '../core/errors.js';
import type { ImageRef, NodeRuntimeRef, RunRecord, StepRecord } from '../core/types.js';
import type { RolloutRecord, InstanceRecord } from '../store/store.js';
import type { DeployPlanView } from './wire.js';
import { ServerChooser } from './failover.js';
import { httpCall } from './http-call.js';

/** Methods that may be sent twice without harm (RFC 9110 §9.2.2): failed over on any connection failure. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);

export class ApiClient {
  /** The control plane's addresses (one, or several replicas: failover.ts). */
  readonly servers: ServerChooser;

  constructor(
    /** One base URL, a comma-separated list of them (checked: server-list.ts), or a chooser shared with other clients. */
    servers: string | ServerChooser,
    readonly token: string,
    /**
     * How `call` sends: the global fetch (default), or node:http (`'node-http'`, the agent's
     * control link: no bundled undici and its WebAssembly parser in a long-running agent).
     */
    private readonly transport: 'fetch' | 'node-http' = 'fetch',
  ) {
    this.servers = typeof servers === 'string' ? ServerChooser.from(servers) : servers;
  }

  /** The address requests go to now (the one that last worked). */
  get baseUrl(): string {
    return this.servers.current;
  }

  /**
   * One request and its whole answer. With several addresses it fails over (failover.ts): GET,
   * HEAD, PUT, DELETE always; other methods only when the request certainly did not arrive,
   * unless the caller says it is idempotent (`idempotent: true`: a level-triggered sync).
   * `body` may be a function, called for each address tried: a report of the caller's state is then
   * made when it is sent, so a long poll retried on another replica does not carry the state of
   * when it began (that older report overwrote a newer one: an instance ready for seconds was
   * stored `pending` again, without its pid).
   */
  // Global fetch, not the undici package: the CLI starts ~150 ms faster without loading it.
  async call<T>(
    method: string,
    path: string,
    body?: unknown,
    opts: { contentType?: string; timeoutMs?: number; idempotent?: boolean } = {},
  ): Promise<T> {
    const encode = (b: unknown): string | undefined => (typeof b === 'string' ? b : b === undefined ? undefined : JSON.stringify(b));
    const { status, text } = await this.servers.run(
      async (base) => {
        const raw = encode(typeof body === 'function' ? (body as () => unknown)() : body);
        const headers: Record<string, string> = raw === undefined ? {} : { 'content-type': opts.contentType ?? 'application/json' };
        // A timeout per address: the next one gets the whole time again.
        const init = { headers, ...(raw === undefined ? {} : { body: raw }), signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000) };
        if (this.transport === 'node-http') {
          return httpCall(base + path, { ...init, method, headers: { authorization: `Bearer ${this.token}`, ...init.headers } }).catch(
            (err: unknown) => {
              throw unreachable(base, err);
            },
          );
        }
        const res = await this.send(base, method, path, init);
        const answer = await res.text().catch((err: unknown) => {
          throw unreachable(base, err);
        });
        return { status: res.status, text: answer };
      },
      { idempotent: opts.idempotent ?? IDEMPOTENT.has(method), unavailable: (r) => unavailable(r.status, r.text) },
    );
    const json = parseJson(text);
    if (status >= 400) throw fromBody((json as { error?: never } | undefined)?.error, `HTTP ${status} from ${method} ${path}`);
    return (json ?? text) as T;
  }

  /** A GET whose body the caller reads as it arrives (followed logs): no timeout; errors as in `call`. */
  async stream(path: string): Promise<Response> {
    return this.openStream(path, {});
  }

  /** A GET with extra headers whose body streams until `signal` aborts (the event feed); errors as in `call`. */
  async open(path: string, headers: Record<string, string>, signal: AbortSignal): Promise<Response> {
    return this.openStream(path, { headers, signal });
  }

  /** Open a streamed GET on the first address that answers (failover.ts); an error answer is read and thrown. */
  private async openStream(path: string, init: { headers?: Record<string, string>; signal?: AbortSignal }): Promise<Response> {
    const res = await this.servers.run((base) => this.send(base, 'GET', path, init), {
      idempotent: true,
      signal: init.signal,
      unavailable: (r) => (r.status === 503 ? 'HTTP 503' : undefined),
      discard: (r) => r.body?.cancel().catch(() => undefined),
    });
    if (res.status >= 400)
      throw fromBody((parseJson(await res.text()) as { error?: never } | undefined)?.error, `HTTP ${res.status} from GET ${path}`);
    return res;
  }

  private async send(
    base: string,
    method: string,
    path: string,
    init: { headers?: Record<string, string>; body?: string; signal?: AbortSignal },
  ): Promise<Response> {
    try {
      return await fetch(base + path, { ...init, method, headers: { authorization: `Bearer ${this.token}`, ...init.headers } });
    } catch (err) {
      throw unreachable(base, err);
    }
  }

  createRun(b: { app: string; commit: string; dirty: boolean; trigger?: RunRecord['trigger'] }): Promise<{ run: RunRecord }> {
    return this.call('POST', '/api/v1/runs', b);
  }
  updateRun(
    id: number,
    b: { status?: string; steps?: StepRecord[]; artifact?: string; revision?: number; rolloutId?: number; error?: string },
  ): Promise<{ run: RunRecord }> {
    return this.call('PATCH', `/api/v1/runs/${id}`, b);
  }
  appendRunLog(id: number, text: string): Promise<void> {
    return this.call('POST', `/api/v1/runs/${id}/log`, text, { contentType: 'text/plain; charset=utf-8' });
  }
  deploy(
    app: string,
    b: { artifact: string; commit: string; dirty: boolean; config: unknown; runId?: number; image?: ImageRef; node?: NodeRuntimeRef },
  ): Promise<{ revision: { number: number }; rollout: RolloutRecord; notes?: string[] }> {
    return this.call('POST', `/api/v1/apps/${encodeURIComponent(app)}/revisions`, b);
  }
  /** What a deploy would do (`?dryRun=true`): nothing is written. Artifact and commit may be left out. */
  planDeploy(app: string, b: { artifact?: string; commit?: string; config: unknown }): Promise<DeployPlanView> {
    return this.call('POST', `/api/v1/apps/${encodeURIComponent(app)}/revisions?dryRun=true`, b);
  }
  /** What a rollback would do (`?dryRun=true`): nothing is written. */
  planRollback(app: string, to: number | undefined): Promise<DeployPlanView> {
    return this.call('POST', `/api/v1/apps/${encodeURIComponent(app)}/rollback?dryRun=true`, to === undefined ? {} : { to });
  }
  rollout(app: string, id: number): Promise<{ rollout: RolloutRecord; activeRevision: number | null; instances: InstanceRecord[] }> {
    return this.call('GET', `/api/v1/apps/${encodeURIComponent(app)}/rollouts/${id}`);
  }
}

/** A failure to reach `base`, naming it; the original error stays as the cause (failover.ts reads its code). */
function unreachable(base: string, err: unknown): PilotError {
  const cause = (err as { cause?: { message?: string } }).cause?.message;
  return fail.cannotReachServer({ baseUrl: base, cause: cause ?? (err as Error).message }, { cause: err });
}

/** A replica's "cannot serve now": a 503, described with the server's message when it gave one. */
function unavailable(status: number, text: string): string | undefined {
  if (status !== 503) return undefined;
  const message = (parseJson(text) as { error?: { message?: unknown } } | undefined)?.error?.message;
  return typeof message === 'string' ? `HTTP 503: ${message}` : 'HTTP 503';
}

function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}
