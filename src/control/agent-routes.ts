/**
 * The control plane's side of the agent protocol: registration with the join token, and the sync
 * call in which an agent reports its instances and receives the full list it should be running.
 * Level-triggered: an instance not in the answer is one the agent must stop.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import { fail } from '../core/errors.js';
import { AGENT_PROTOCOL, RegisterRequest, SyncRequest, type RegisterResponse } from '../api/protocol.js';
import type { InstanceSpec, InstanceState } from '../core/types.js';
import type { NodeRecord, Store } from '../store/store.js';
import { bearer, hashToken, newToken, tokensEqual } from '../api/auth.js';
import { nodeIsolates, type Reconciler } from './reconciler.js';
import type { SecretBox } from '../store/secret-box.js';
import { appMasker, openSecrets } from './source-routes.js';
import { registryAuthFor } from './registry-routes.js';
import type { CpuMeter } from './cpu-meter.js';

export interface AgentRouteDeps {
  store: Store;
  box: SecretBox;
  reconciler: Reconciler;
  joinToken: () => string;
  /**
   * The admin token: a registration made with it may take over an existing node's name with a new
   * credential. A Swarm target's bridge (src/swarm/bridge.ts) registers this way: it runs in the
   * leader's process, and after a failover the new leader's bridge has no copy of the credential the
   * old one kept in its own home. The admin can remove a node anyway; an agent's join token cannot.
   */
  adminToken?: () => string;
  /** Instances' CPU totals, for the autoscaler's targetCpu (control/cpu-meter.ts). */
  cpu?: Pick<CpuMeter, 'record'>;
}

/** Resolve the node a request's credential belongs to, or throw 401. */
export async function authenticateNode(store: Store, req: FastifyRequest): Promise<NodeRecord> {
  const token = bearer(req.headers.authorization);
  if (token) {
    // Looked up by its sha256: the credential has 192 random bits, so an index lookup on its hash
    // leaks nothing a timing attack could use, and stays O(1) with thousands of nodes.
    const node = await store.getNodeByCredentialHash(hashToken(token));
    if (node) return node;
  }
  throw fail.invalidNodeCredential();
}

export function registerAgentRoutes(app: FastifyInstance, deps: AgentRouteDeps): void {
  const { store, reconciler } = deps;

  app.post<{ Body: RegisterRequest }>('/api/v1/agent/register', { schema: { body: RegisterRequest } }, async (req, reply) => {
    const token = bearer(req.headers.authorization);
    // The bootstrap token in $PILOT_HOME/join-token, or one made by `pilot token create --join` and not revoked.
    const asAdmin = token !== undefined && deps.adminToken !== undefined && tokensEqual(token, deps.adminToken());
    const valid =
      token !== undefined &&
      (asAdmin || tokensEqual(token, deps.joinToken()) || (await store.findJoinToken(hashToken(token))) !== undefined);
    if (!valid) {
      req.log.warn({ node: (req.body as { name?: unknown }).name }, 'registration refused: bad join token');
      throw fail.invalidJoinToken();
    }
    const b = req.body;
    return reconciler.serial(async () => {
      const existing = await store.getNodeByName(b.name);
      const now = Date.now();
      const sameCredential =
        existing !== undefined && b.credential !== undefined && tokensEqual(existing.credentialHash, hashToken(b.credential));
      if (existing && !sameCredential && !asAdmin) throw fail.nodeNameTaken({ name: b.name });
      if (existing && !sameCredential)
        req.log.warn({ node: b.name }, 'node registered again with the admin token: its credential is renewed');
      const credential = sameCredential ? b.credential! : newToken('pilot_node');
      const node: NodeRecord = {
        id: existing?.id ?? randomUUID(),
        name: b.name,
        address: b.address,
        apiUrl: b.apiUrl,
        credentialHash: hashToken(credential),
        agentToken: b.agentToken,
        registeredAt: existing?.registeredAt ?? now,
        lastSeenAt: now,
        scheduling: existing?.scheduling ?? 'eligible',
        cpus: b.cpus,
        memoryMb: b.memoryMb,
        labels: b.labels ?? {},
        runtimes: b.runtimes ?? {},
      };
      await store.upsertNode(node);
      reconciler.nodeHeardFrom(node.id);
      // A new node is room for apps waiting for some; a returning one may hold lost instances.
      reconciler.nodeChanged(node.id).catch((err: unknown) => req.log.error({ err }, 'node change not reconciled'));
      req.log.info({ node: node.name, address: node.address, rejoined: Boolean(existing) }, 'node registered');
      const res: RegisterResponse = { protocol: AGENT_PROTOCOL, nodeId: node.id, credential };
      void reply.status(existing ? 200 : 201);
      return res;
    });
  });

  app.post<{ Body: SyncRequest }>('/api/v1/agent/sync', { schema: { body: SyncRequest } }, async (req) => {
    const node = await authenticateNode(store, req);
    deps.cpu?.record(node.id, req.body.instances);
    const first = await syncOnce(node, req.body, true, req.log);
    const waitMs = req.body.waitMs ?? 0;
    const known = req.body.instances.filter((r) => !reconciler.isOrphan(node.id, r.id) || first.stop.includes(r.id));
    if (waitMs === 0 || !sameSet(first.instances, known)) return first;
    // Nothing new for this agent: hold the answer until something changes (or the wait ends).
    const ended = reconciler.nodePolling(node.id);
    req.raw.socket.once('close', ended); // the agent went away: active checks take over at once
    try {
      await reconciler.waitForChange(waitMs);
    } finally {
      req.raw.socket.off('close', ended);
      ended();
    }
    if (req.raw.destroyed) return first;
    return syncOnce(node, { ...req.body, instances: [] }, false, req.log);
  });

  // Instances the agent is already stopping are not news to it.
  const sameSet = (desired: readonly { id: string }[], reported: readonly { id: string; state: string }[]): boolean => {
    // A finished release instance stays desired (state stopped) while its rollout runs: not news either.
    const live = reported.filter((r) => r.state !== 'stopping' && (r.state !== 'stopped' || desired.some((d) => d.id === r.id)));
    return desired.length === live.length && desired.every((d) => live.some((r) => r.id === d.id));
  };

  /** Apply a report (when `apply`) and compute this node's desired instances. */
  const syncOnce = (
    reportingNode: NodeRecord,
    body: SyncRequest,
    apply: boolean,
    log: FastifyBaseLogger,
  ): Promise<{ protocol: number; instances: InstanceSpec[]; stop: string[] }> =>
    reconciler.serial(async () => {
      let node = reportingNode;
      reconciler.nodeHeardFrom(node.id);
      const now = Date.now();
      await store.touchNode(node.id, now);
      if (apply && body.runtimes && JSON.stringify(body.runtimes) !== JSON.stringify(node.runtimes)) {
        node = { ...node, runtimes: body.runtimes };
        await store.upsertNode(node);
        reconciler.nudge();
        log.info({ node: node.name, runtimes: body.runtimes }, 'node runtimes changed');
      }
      const mine = new Map((await store.listInstances({ nodeId: node.id })).map((i) => [i.id, i]));
      /** Apps whose instances this report changed: reconciled next (and the routing table may change). */
      const changed = new Set<string>();
      const reported = new Set<string>();
      // An instance's error may quote its environment (an exec error names the bad value): the
      // app's secrets are masked before it is stored, shown by `pilot status` or put in a rollout's reason.
      const maskers = new Map<string, (line: string) => string>();
      const masked = async (app: string, text: string | undefined): Promise<string | undefined> => {
        if (text === undefined) return undefined;
        let mask = maskers.get(app);
        if (!mask) maskers.set(app, (mask = await appMasker(store, deps.box, app)));
        return mask(text);
      };
      const orphans: Parameters<Reconciler['reportOrphans']>[2][number][] = [];
      for (const s of apply ? body.instances : []) {
        reported.add(s.id);
        const rec = mine.get(s.id);
        if (!rec) {
          // Unknown (a lost or restored database) or another node's: never applied, never stopped
          // on a guess. The agent keeps it running; `pilot orphans stop ID` stops it.
          if (s.state !== 'stopped') orphans.push({ id: s.id, app: s.app, revision: s.revision, state: s.state, port: s.port, pid: s.pid });
          continue;
        }
        if (rec.desired === 'stop' && s.state === 'stopped') {
          await store.deleteInstance(rec.id);
          reconciler.forgetInstance(rec);
          mine.delete(rec.id);
          changed.add(rec.app);
          continue;
        }
        const lastError = await masked(rec.app, s.lastError);
        const logTail = await masked(rec.app, s.logTail);
        if (
          rec.state !== s.state ||
          rec.port !== s.port ||
          rec.restarts !== s.restarts ||
          rec.pid !== s.pid ||
          rec.lastError !== lastError ||
          rec.containerId !== s.containerId ||
          rec.logTail !== logTail ||
          rec.address !== s.address
        ) {
          changed.add(rec.app);
          await store.updateInstanceStatus(
            rec.id,
            {
              state: s.state as InstanceState,
              port: s.port,
              pid: s.pid,
              restarts: s.restarts,
              lastError,
              startedAt: s.startedAt,
              containerId: s.containerId,
              logTail,
              address: s.address,
            },
            now,
          );
        }
      }
      for (const rec of [...mine.values()]) {
        if (apply && rec.desired === 'stop' && !reported.has(rec.id)) {
          await store.deleteInstance(rec.id);
          reconciler.forgetInstance(rec);
          mine.delete(rec.id);
          changed.add(rec.app);
        }
      }
      if (apply) {
        for (const id of reconciler.reportOrphans(node.id, node.name, orphans)) {
          log.warn(
            { node: node.name, instance: id },
            'agent runs an instance this control plane does not know: kept running as an orphan (`pilot orphans`)',
          );
        }
      }
      if (changed.size > 0) reconciler.appsChanged(changed);
      const stop = [...[...mine.values()].filter((r) => r.desired === 'stop').map((r) => r.id), ...reconciler.orphansToStop(node.id)];
      const instances: InstanceSpec[] = [];
      const secrets = new Map<string, Record<string, string>>();
      for (const rec of mine.values()) {
        if (!secrets.has(rec.app)) secrets.set(rec.app, await openSecrets(store, deps.box, rec.app));
        if (rec.desired === 'stop') continue;
        const rev = await reconciler.revision(rec.app, rec.revision);
        if (!rev) continue;
        instances.push({
          id: rec.id,
          app: rec.app,
          revision: rec.revision,
          artifact: rev.artifact,
          runtime: rev.config.runtime,
          image: rev.image,
          registryAuth: await registryAuthFor(store, deps.box, rev.image?.ref),
          node: rev.nodeRuntime,
          resources: rev.config.resources,
          commit: rev.commit,
          run: rev.config.run,
          port: rev.config.port,
          env: { ...rev.config.env, ...secrets.get(rec.app) },
          ...(rev.config.target !== undefined ? { secretNames: Object.keys(secrets.get(rec.app) ?? {}) } : {}),
          health: rev.config.health,
          stopTimeoutMs: rev.config.deploy.stopTimeoutMs,
          ...(rec.kind === 'release'
            ? { kind: 'release' as const, release: rev.config.release, releaseTimeoutMs: rev.config.deploy.releaseTimeoutMs }
            : {}),
          ...(rec.kind !== 'release' && rev.config.port !== undefined && rev.config.runtime === 'process' && nodeIsolates(node)
            ? { netns: true }
            : {}),
          ...(rev.config.volumes.length > 0 ? { volumes: rev.config.volumes } : {}),
        });
      }
      return { protocol: AGENT_PROTOCOL, instances, stop };
    });
}
