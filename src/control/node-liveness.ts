/**
 * What the rest of the control plane asks about node health, before and after the NodeMonitor
 * exists (it is made after the reconciler, which it notifies): without a monitor every node is
 * `ready`, as in unit tests and benches.
 */
import type { NodeStatus } from '../core/types.js';
import type { NodeMonitor } from './node-monitor.js';

/** What answers for node health: the leader's NodeMonitor, or a follower's FollowerNodeView. */
export type NodeHealthSource = Pick<NodeMonitor, 'heardFrom' | 'pollOpened' | 'pollClosed' | 'status'>;

export class NodeLiveness {
  private monitor: NodeHealthSource | undefined;

  attach(m: NodeHealthSource): void {
    this.monitor = m;
  }

  heardFrom(nodeId: string): void {
    this.monitor?.heardFrom(nodeId);
  }

  /** A node's long poll is open (see NodeMonitor.pollOpened); call the returned function when it ends (twice is harmless). */
  polling(nodeId: string): () => void {
    this.monitor?.pollOpened(nodeId);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.monitor?.pollClosed(nodeId);
    };
  }

  status(nodeId: string): NodeStatus {
    return this.monitor?.status(nodeId) ?? 'ready';
  }

  isLive(nodeId: string): boolean {
    return this.status(nodeId) === 'ready';
  }
}
