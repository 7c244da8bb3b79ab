/**
 * Node liveness as a pure function of what the control plane observed (elapsed times come in, from
 * a monotonic clock). A node is `ready` while its agent answers (a sync or an active health check);
 * `suspect` once the agent stops answering; `down` when the agent has not answered for downAfterMs
 * AND none of its instances answers either. An agent that died while its apps keep serving stays
 * `suspect`: its instances are neither rescheduled nor dropped, and a restarted agent re-adopts them.
 *
 * After a control-plane start, a node not heard from yet is `suspect` for startupGraceMs.
 *
 *   ready ──agent silent > suspectAfterMs──► suspect ──agent silent > downAfterMs, no instance answers──► down
 *     ▲                                         │                                                         │
 *     └──────────────── agent answers ──────────┴──────────────────── agent answers ──────────────────────┘
 */
import type { NodeStatus } from './types.js';

export interface NodeObservation {
  /** ms since the agent last answered (sync or health check); undefined = never since start. */
  readonly sinceAgentOkMs: number | undefined;
  /** ms since the control plane started watching (a node never heard from gets this long). */
  readonly watchedForMs: number;
  /** Whether any of its instances accepted a connection at the last check; undefined = none to check. */
  readonly instancesAnswering: boolean | undefined;
}

export interface NodeHealthSettings {
  readonly suspectAfterMs: number;
  readonly downAfterMs: number;
  /**
   * After a control-plane start, a node not heard from yet is `suspect` (never `down`) this long:
   * its agent may simply not have reported yet, and what it runs must not be replaced on a guess.
   */
  readonly startupGraceMs?: number;
}

/** Defaults for a LAN: a dead machine is `down` within ~1.5 s plus one check interval. */
export const DEFAULT_NODE_HEALTH: NodeHealthSettings = { suspectAfterMs: 600, downAfterMs: 1500, startupGraceMs: 10_000 };

export function nodeStatus(o: NodeObservation, s: NodeHealthSettings = DEFAULT_NODE_HEALTH): NodeStatus {
  if (o.sinceAgentOkMs === undefined && o.watchedForMs <= (s.startupGraceMs ?? 0)) return 'suspect';
  const silentFor = o.sinceAgentOkMs ?? o.watchedForMs;
  if (silentFor <= s.suspectAfterMs) return 'ready';
  if (silentFor <= s.downAfterMs) return 'suspect';
  return o.instancesAnswering === true ? 'suspect' : 'down';
}
