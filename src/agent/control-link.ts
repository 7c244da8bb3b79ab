/**
 * The agent's side of the agent protocol: register with the join token (once; afterwards the node
 * credential stored in node.json proves who we are), then sync. If the control plane no longer
 * knows the credential (its state was reset), register again with the join token.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import type { Log as Logger } from '../core/log.js';
import { PilotError, fail } from '../core/errors.js';
import { ApiClient } from '../api/client.js';
import type { ServerChooser } from '../api/failover.js';
import type { Static } from '@sinclair/typebox';
import { AGENT_PROTOCOL } from '../api/protocol-constants.js';
import type { RegisterResponse, NodeRuntimesSchema } from '../api/protocol.js';
import type { InstanceSpec, InstanceStatus } from '../core/types.js';

type NodeRuntimes = Static<typeof NodeRuntimesSchema>;

interface NodeFile {
  nodeId: string;
  credential: string;
  name: string;
}
interface Registration {
  name: string;
  address: string;
  apiUrl: string;
  agentToken: string;
  labels?: Record<string, string>;
  runtimes?: NodeRuntimes;
}

export class ControlPlaneLink {
  private saved: NodeFile | undefined;
  private registration: Registration | undefined;
  /** Runtimes that changed since they were last reported: sent with the next sync. */
  private pendingRuntimes: NodeRuntimes | undefined;

  constructor(
    /** The control plane's address, or its replicas' (shared with the artifact downloads: one address that works for both). */
    private readonly servers: ServerChooser,
    private readonly joinToken: string,
    private readonly nodeFile: string,
    private readonly log: Logger,
  ) {
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
    if (!this.saved) throw fail.agentNotRegisteredYet();
    return this.saved.credential;
  }

  /** Register (or re-register, proving identity with the stored credential). Retries until it works or is refused. */
  async register(r: Registration): Promise<void> {
    this.registration = r;
    for (let attempt = 0; ; attempt++) {
      try {
        const credential = this.saved && this.saved.name === r.name ? this.saved.credential : undefined;
        // With the credential a registration can be sent twice (the second finds the node); the
        // first one cannot (its answer lost, the second would find the name taken).
        const res = await this.post<RegisterResponse>('/api/v1/agent/register', this.joinToken, credential !== undefined, 0, {
          protocol: AGENT_PROTOCOL,
          ...r,
          ...(credential ? { credential } : {}),
          cpus: availableParallelism(),
          memoryMb: Math.floor(totalmem() / 1024 / 1024),
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

  /** Report a change of runtime availability with the next sync (and any later registration). */
  setRuntimes(runtimes: NodeRuntimes): void {
    this.pendingRuntimes = runtimes;
    if (this.registration) this.registration = { ...this.registration, runtimes };
  }

  /**
   * Report and receive the desired instances and the ids to stop; undefined when the answer could
   * not be had. `stop` undefined: a control plane that does not say (stop whatever is not desired).
   */
  /**
   * Report and get the desired instances. `instances` is called for each replica tried: the report
   * is level-triggered (the whole state each time) and sent again to another replica if need be,
   * and it must be the state of that moment, not of when a long poll began.
   */
  async sync(
    instances: () => InstanceStatus[],
    waitMs = 0,
  ): Promise<{ instances: InstanceSpec[]; stop: string[] | undefined } | undefined> {
    try {
      const runtimes = this.pendingRuntimes;
      const res = await this.post<{ instances: InstanceSpec[]; stop?: string[] }>(
        '/api/v1/agent/sync',
        this.credential(),
        true,
        waitMs,
        () => ({
          protocol: AGENT_PROTOCOL,
          instances: instances().map(stripUndefined),
          ...(waitMs > 0 ? { waitMs } : {}),
          ...(runtimes ? { runtimes } : {}),
        }),
      );
      if (this.pendingRuntimes === runtimes) this.pendingRuntimes = undefined;
      return { instances: res.instances, stop: res.stop };
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

  private post<T>(path: string, token: string, idempotent: boolean, waitMs: number, body: unknown): Promise<T> {
    // One address: a long poll is held up to 30 s, allow for it (as always). Several: a replica
    // that holds the answer past the wait plus 10 s (SIGSTOPped, wedged) is left for the next one.
    const timeoutMs = this.servers.servers.length > 1 ? waitMs + 10_000 : 40_000;
    return new ApiClient(this.servers, token, 'node-http').call<T>('POST', path, body, { timeoutMs, idempotent });
  }
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
