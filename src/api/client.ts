/**
 * A typed client of the REST API, used by the CLI and by the pipeline runner (which runs in the
 * CLI for `pilot run` and in the server for webhooks: either way it talks to the API, never to
 * the store). Errors come back as PilotError with the server's code, message and hint.
 */
import { fromBody, type PilotError, fail } from '../core/errors.js';
import type { ImageRef, NodeRuntimeRef, RunRecord, StepRecord } from '../core/types.js';
import type { RolloutRecord, InstanceRecord } from '../store/store.js';
import type { DeployPlanView } from './wire.js';
import { httpCall } from './http-call.js';

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly token: string,
    /**
     * How `call` sends: the global fetch (default), or node:http (`'node-http'`, the agent's
     * control link: no bundled undici and its WebAssembly parser in a long-running agent).
     */
    private readonly transport: 'fetch' | 'node-http' = 'fetch',
  ) {}

  // Global fetch, not the undici package: the CLI starts ~150 ms faster without loading it.
  async call<T>(method: string, path: string, body?: unknown, opts: { contentType?: string; timeoutMs?: number } = {}): Promise<T> {
    const raw = typeof body === 'string' ? body : body === undefined ? undefined : JSON.stringify(body);
    const init: { headers: Record<string, string>; body?: string; signal: AbortSignal } = {
      headers: raw === undefined ? {} : { 'content-type': opts.contentType ?? 'application/json' },
      ...(raw === undefined ? {} : { body: raw }),
      signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
    };
    let status: number;
    let text: string;
    if (this.transport === 'node-http') {
      ({ status, text } = await httpCall(this.baseUrl + path, {
        ...init,
        method,
        headers: { authorization: `Bearer ${this.token}`, ...init.headers },
      }).catch((err: unknown) => {
        throw this.unreachable(err);
      }));
    } else {
      const res = await this.send(method, path, init);
      status = res.status;
      text = await res.text().catch((err: unknown) => {
        throw this.unreachable(err);
      });
    }
    const json = parseJson(text);
    if (status >= 400) throw fromBody((json as { error?: never } | undefined)?.error, `HTTP ${status} from ${method} ${path}`);
    return (json ?? text) as T;
  }

  /** A GET whose body the caller reads as it arrives (followed logs): no timeout; errors as in `call`. */
  async stream(path: string): Promise<Response> {
    const res = await this.send('GET', path, {});
    if (res.status >= 400)
      throw fromBody((parseJson(await res.text()) as { error?: never } | undefined)?.error, `HTTP ${res.status} from GET ${path}`);
    return res;
  }

  /** A GET with extra headers whose body streams until `signal` aborts (the event feed); errors as in `call`. */
  async open(path: string, headers: Record<string, string>, signal: AbortSignal): Promise<Response> {
    const res = await this.send('GET', path, { headers, signal });
    if (res.status >= 400)
      throw fromBody((parseJson(await res.text()) as { error?: never } | undefined)?.error, `HTTP ${res.status} from GET ${path}`);
    return res;
  }

  private async send(
    method: string,
    path: string,
    init: { headers?: Record<string, string>; body?: string; signal?: AbortSignal },
  ): Promise<Response> {
    try {
      return await fetch(this.baseUrl + path, { ...init, method, headers: { authorization: `Bearer ${this.token}`, ...init.headers } });
    } catch (err) {
      throw this.unreachable(err);
    }
  }

  private unreachable(err: unknown): PilotError {
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    return fail.cannotReachServer({ baseUrl: this.baseUrl, cause: cause ?? (err as Error).message });
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

function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}
