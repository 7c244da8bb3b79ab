/**
 * A follower's view of node health (several replicas). The leader decides it: its node monitor
 * hears the agents that sync with it, checks every agent actively, and records each change as a
 * `node.status` event. A follower mirrors those events (the latest per node wins) and counts a node
 * without one as `ready`. It never decides a node's health itself: an agent that syncs with another
 * replica is silent to it, and a follower that judged by what it heard called every such node
 * `suspect`, so a deploy through it was refused with "no ready node" while every agent was fine.
 * Used where a follower reads node health: deploy admission and its routing table.
 */
import type { PilotEvent } from '../core/events.js';
import type { NodeStatus } from '../core/types.js';
import type { Store } from '../store/store.js';

const STATUSES: ReadonlySet<string> = new Set<NodeStatus>(['ready', 'suspect', 'down']);

export class FollowerNodeView {
  /** By node id; events recorded before they carried it are matched by name at start. */
  private readonly statuses = new Map<string, NodeStatus>();
  /** Nodes whose status came live: the start-up read never overwrites them with an older one. */
  private readonly heardLive = new Set<string>();
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly store: Store,
    /** A node's status changed (the routing table may change). */
    private readonly onChange: (nodeId: string) => void,
  ) {}

  /** Follow the feed, then read the statuses recorded so far (events are rare: one per change). */
  async start(): Promise<void> {
    this.unsubscribe ??= this.store.subscribeEvents((batch) => {
      for (const e of batch) this.apply(e, undefined, true);
    });
    const ids = new Map((await this.store.listNodes()).map((n) => [n.name, n.id]));
    const { trimmedThrough } = await this.store.eventBounds();
    let after = trimmedThrough;
    for (;;) {
      const page = await this.store.readEvents({ after, limit: 1000, kinds: ['node.status'] });
      for (const e of page) this.apply(e, ids, false);
      if (page.length < 1000) break;
      after = page[page.length - 1]!.id;
    }
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  private apply(e: PilotEvent, ids: ReadonlyMap<string, string> | undefined, live: boolean): void {
    if (e.kind !== 'node.status') return;
    const status = e.payload.status;
    const id = typeof e.payload.nodeId === 'string' ? e.payload.nodeId : ids?.get(String(e.payload.node));
    if (id === undefined || typeof status !== 'string' || !STATUSES.has(status)) return;
    if (live) this.heardLive.add(id);
    else if (this.heardLive.has(id)) return;
    if (this.statuses.get(id) === status) return;
    this.statuses.set(id, status as NodeStatus);
    if (live) this.onChange(id);
  }

  status(nodeId: string): NodeStatus {
    return this.statuses.get(nodeId) ?? 'ready';
  }

  // The NodeMonitor's other hooks: what a follower hears is not its to judge.
  heardFrom(): void {}
  pollOpened(): void {}
  pollClosed(): void {}
}
