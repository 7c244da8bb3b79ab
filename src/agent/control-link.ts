/**
 * The agent's side of the agent protocol: register with the join token (once; afterwards the node
 * credential stored in node.json proves who we are), then sync. If the control plane no longer
 * knows the credential (its state was reset), register again with the join token.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import type { Logger } from 'pino';
import { request } from 'undici';
import { fromBody, PilotError } from '../core/errors.js';
import { AGENT_PROTOCOL, type RegisterResponse } from '../core/protocol.js';
import type { InstanceSpec, InstanceStatus } from '../core/types.js';

interface NodeFile { nodeId: string; credential: string; name: string }
interface Registration { name: string; address: string; apiUrl: string; agentToken: string; labels?: Record<string, string> }

export class ControlPlaneLink {
  private saved: NodeFile | undefined;
  private registration: Registration | undefined;

  constructor(private readonly server: string, private readonly joinToken: string, private readonly nodeFile: string, private readonly log: Logger) {
    try {
      this.saved = JSON.parse(readFileSync(nodeFile, 'utf8')) as NodeFile;
    } catch {
      this.saved = undefined;
    }
  }

  get nodeId(): string | undefined {
    return this.saved?.nodeId;
  }

  credential(): string {
    if (!this.saved) throw new PilotError('unauthorized', 'agent is not registered yet');
    return this.saved.credential;
  }

  /** Register (or re-register, proving identity with the stored credential). Retries until it works or is refused. */
  async register(r: Registration): Promise<void> {
    this.registration = r;
    for (let attempt = 0; ; attempt++) {
      try {
        const credential = this.saved && this.saved.name === r.name ? this.saved.credential : undefined;
        const res = await this.post<RegisterResponse>('/api/v1/agent/register', this.joinToken, {
          protocol: AGENT_PROTOCOL, ...r, ...(credential ? { credential } : {}),
          cpus: availableParallelism(), memoryMb: Math.floor(totalmem() / 1024 / 1024),
        });
        this.saved = { nodeId: res.nodeId, credential: res.credential, name: r.name };
        writeFileSync(this.nodeFile, JSON.stringify(this.saved), { mode: 0o600 });
        chmodSync(this.nodeFile, 0o600);
        this.log.info({ node: r.name, nodeId: res.nodeId }, 'registered with control plane');
        return;
      } catch (err) {
        if (err instanceof PilotError && !err.retryable) throw err;
        if (attempt % 10 === 0) this.log.warn({ err: (err as Error).message }, 'control plane unreachable; retrying registration');
        await new Promise((r) => setTimeout(r, Math.min(2000, 200 * (attempt + 1))));
      }
    }
  }

  /** Report and receive the desired instances; undefined when the answer could not be had. */
  async sync(instances: InstanceStatus[], waitMs = 0): Promise<InstanceSpec[] | undefined> {
    try {
      const res = await this.post<{ instances: InstanceSpec[] }>('/api/v1/agent/sync', this.credential(), {
        protocol: AGENT_PROTOCOL, instances: instances.map(stripUndefined), ...(waitMs > 0 ? { waitMs } : {}),
      });
      return res.instances;
    } catch (err) {
      if (err instanceof PilotError && err.code === 'unauthorized' && this.registration) {
        this.log.warn('control plane does not know this node any more; registering again');
        this.saved = undefined;
        await this.register(this.registration);
        return undefined;
      }
      throw err;
    }
  }

  private async post<T>(path: string, token: string, body: unknown): Promise<T> {
    let res;
    try {
      res = await request(this.server + path, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        headersTimeout: 40_000,
        bodyTimeout: 10_000,
      });
    } catch (err) {
      throw new PilotError('server_unreachable', `control plane ${this.server} unreachable: ${(err as Error).message}`);
    }
    const text = await res.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.statusCode >= 400) throw fromBody((json as { error?: never } | undefined)?.error, `HTTP ${res.statusCode} from ${path}`);
    return json as T;
  }
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
