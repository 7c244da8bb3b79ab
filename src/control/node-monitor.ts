/**
 * Watches every node: an agent answering a sync counts as a heartbeat; besides, the control plane
 * checks each agent's /v1/healthz itself (active health check, so a dead machine is noticed even
 * between long polls), and when an agent is silent, checks whether its instances still accept
 * connections. The status is the pure `nodeStatus` of those observations (core/node-health.ts).
 * Everything here is in memory and monotonic: after a control-plane restart, nodes get the grace
 * of a fresh start and are `ready` again as soon as their agents report.
 */
import { connect } from 'node:net';
import type { Logger } from 'pino';
import { Agent, request } from '../http/undici.js';
import { DEFAULT_NODE_HEALTH, nodeStatus, type NodeHealthSettings } from '../core/node-health.js';
import type { NodeStatus } from '../core/types.js';
import type { NodeRecord, Store } from '../store/store.js';

/** Instance states whose process may be listening: checked when their agent is silent. */
const ANSWERING_STATES: ReadonlySet<string> = new Set(['ready', 'starting', 'unhealthy']);

const mono = (): number => performance.now();

/**
 * Whether an app answers HTTP on host:port within timeoutMs: any bytes back count (a 404 or 400 is
 * an answer). A TCP connect alone is not enough: the kernel completes the handshake into the listen
 * backlog even for a process that is frozen (SIGSTOP, a hung VM), so a node whose agent and apps were
 * all stopped looked alive forever and its apps were never replaced.
 */
function httpAnswers(host: string, port: number, path: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (ok: boolean): void => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: pilot-node-check\r\nConnection: close\r\n\r\n`));
    s.once('data', () => done(true));
    s.once('error', () => done(false));
    s.once('close', () => done(false));
  });
}

/** The app's health path when it is plain printable ASCII without spaces, else "/". */
function safePath(path: string | undefined): string {
  return path !== undefined && /^\/[\x21-\x7e]*$/.test(path) ? path : '/';
}

/** How long a silent agent's app may take to answer before it counts as not answering. */
const INSTANCE_ANSWER_MS = 1000;

export class NodeMonitor {
  private started = mono();
  /**
   * Nodes this process has checked at least once (agent, then its apps). A node never heard from
   * and never checked is at most `suspect`: the reconciler's first pass runs right after start-up,
   * and on a loaded machine start-up alone took longer than downAfterMs, so a control-plane restart
   * declared every node `down` and replaced instances that were serving all along.
   */
  private readonly checked = new Set<string>();
  private readonly lastOk = new Map<string, number>();
  private readonly answering = new Map<string, boolean | undefined>();
  private readonly statuses = new Map<string, NodeStatus>();
  private readonly openPolls = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  /** Keep-alive connections to the agents: a check every few hundred ms must not be a new TCP connection each time. */
  private readonly http = new Agent({ connections: 1, keepAliveTimeout: 10_000, connect: { timeout: 1000 } });

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    /** A node's status changed (also its first status: a node found down at start-up is news too). */
    private readonly onChange: (nodeId: string) => void,
    private readonly settings: NodeHealthSettings & { intervalMs: number; probeTimeoutMs: number } = {
      ...DEFAULT_NODE_HEALTH,
      intervalMs: 250,
      probeTimeoutMs: 250,
    },
  ) {}

  start(): void {
    this.started = mono();
    this.timer = setInterval(() => {
      if (this.checking) return;
      this.checking = true;
      this.checkAll()
        .catch((err: unknown) => this.log.error({ err }, 'node check failed'))
        .finally(() => (this.checking = false));
    }, this.settings.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    void this.http.close().catch(() => undefined);
  }

  /** An agent answered (a sync): the cheapest heartbeat. */
  heardFrom(nodeId: string): void {
    this.lastOk.set(nodeId, mono());
    this.update(nodeId);
  }

  /**
   * An agent holds a long poll open: while its connection stays open the agent process is alive
   * (a dead process closes its sockets), so it needs no active check. A machine that loses power
   * leaves the socket looking open until the poll ends (≤ its wait), then the checks take over.
   */
  pollOpened(nodeId: string): void {
    this.openPolls.set(nodeId, (this.openPolls.get(nodeId) ?? 0) + 1);
    this.heardFrom(nodeId);
  }

  pollClosed(nodeId: string): void {
    const n = (this.openPolls.get(nodeId) ?? 1) - 1;
    if (n <= 0) this.openPolls.delete(nodeId);
    else this.openPolls.set(nodeId, n);
  }

  status(nodeId: string): NodeStatus {
    return this.statuses.get(nodeId) ?? this.compute(nodeId);
  }

  private compute(nodeId: string): NodeStatus {
    const now = mono();
    const ok = this.lastOk.get(nodeId);
    const status = nodeStatus(
      {
        sinceAgentOkMs: ok === undefined ? undefined : now - ok,
        watchedForMs: now - this.started,
        instancesAnswering: this.answering.get(nodeId),
      },
      this.settings,
    );
    return status === 'down' && ok === undefined && !this.checked.has(nodeId) ? 'suspect' : status;
  }

  private update(nodeId: string, name?: string): void {
    const next = this.compute(nodeId);
    const prev = this.statuses.get(nodeId);
    if (prev === next) return;
    this.statuses.set(nodeId, next);
    if (prev !== undefined) {
      this.log.warn({ node: name ?? nodeId, from: prev, to: next }, 'node status changed');
      this.recordChange(nodeId, name, prev, next);
    }
    this.onChange(nodeId);
  }

  /** Liveness is decided here, in memory: its change goes into the event feed from here (the store writes the rest). */
  private recordChange(nodeId: string, name: string | undefined, from: NodeStatus, to: NodeStatus): void {
    const time = Date.now();
    (async () => {
      const node = name ?? (await this.store.listNodes()).find((n) => n.id === nodeId)?.name ?? nodeId;
      await this.store.appendEvent({ kind: 'node.status', app: undefined, time, payload: { node, nodeId, status: to, from } });
    })().catch((err: unknown) => this.log.warn({ err, node: name ?? nodeId }, 'node status event not recorded'));
  }

  /** At most this many active checks at once, so a crowd of silent nodes cannot swamp the control plane. */
  private static readonly MAX_CHECKS = 64;

  private async checkAll(): Promise<void> {
    const nodes = await this.store.listNodes();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < nodes.length) await this.check(nodes[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(NodeMonitor.MAX_CHECKS, nodes.length) }, worker));
  }

  private async check(n: NodeRecord): Promise<void> {
    if (this.openPolls.has(n.id)) {
      this.lastOk.set(n.id, mono());
      this.answering.delete(n.id);
      this.update(n.id, n.name);
      return;
    }
    // Heard from moments ago (a long poll just answered; the agent is about to poll again): a
    // probe would tell nothing new. Silence is what gets checked, and skipping this never delays
    // `down`, which follows from the silence alone.
    const ok = this.lastOk.get(n.id);
    if (ok !== undefined && mono() - ok < this.settings.suspectAfterMs / 2) {
      this.update(n.id, n.name);
      return;
    }
    try {
      const t = this.settings.probeTimeoutMs;
      const res = await request(`${n.apiUrl}/v1/healthz`, { dispatcher: this.http, headersTimeout: t, bodyTimeout: t });
      await res.body.dump();
      if (res.statusCode === 200) {
        this.lastOk.set(n.id, mono());
        this.answering.delete(n.id);
      }
    } catch {
      // The agent is silent: do its apps still answer? (An agent restart must not move them.)
      // Not only `ready` ones: an agent that restarts reports its re-adopted instances `starting`
      // until their probe passes, and an agent killed again in that window (a crash loop) left a node
      // with serving apps looking empty, so it went `down` and its apps were moved. Whether they
      // answer is what the HTTP check says.
      const instances = (await this.store.listInstances({ nodeId: n.id })).filter(
        (i) => i.desired === 'run' && i.port !== undefined && ANSWERING_STATES.has(i.state),
      );
      if (instances.length === 0) this.answering.set(n.id, undefined);
      else {
        // An instance in its own network namespace answers at its own address.
        const paths = new Map<string, string>();
        for (const app of new Set(instances.map((i) => i.app)))
          paths.set(app, safePath((await this.store.getApp(app))?.config.health.path));
        const results = await Promise.all(
          instances.map((i) =>
            httpAnswers(
              i.address ?? n.address,
              i.port!,
              paths.get(i.app) ?? '/',
              Math.max(this.settings.probeTimeoutMs, INSTANCE_ANSWER_MS),
            ),
          ),
        );
        this.answering.set(n.id, results.some(Boolean));
      }
    }
    this.checked.add(n.id);
    this.update(n.id, n.name);
  }
}
