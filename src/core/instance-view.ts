/**
 * What `pilot status` shows for an instance: the agent's last report is only as good as its node.
 * An instance on a `down` node is `lost` (nobody knows whether it runs); one the control plane is
 * taking away (desired drain or stop) is `stopping` until it is gone, whatever it last reported.
 */
import type { InstanceState, NodeStatus } from './types.js';

export type InstanceView = InstanceState | 'lost';

export function instanceView(
  i: { readonly state: InstanceState; readonly desired: 'run' | 'drain' | 'stop' },
  node: NodeStatus | undefined,
): InstanceView {
  if (node === 'down' || node === undefined) return i.state === 'stopped' ? 'stopped' : 'lost';
  if (i.desired !== 'run' && i.state !== 'stopped') return 'stopping';
  return i.state;
}
