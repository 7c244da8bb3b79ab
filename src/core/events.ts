/**
 * The event feed's vocabulary: what happened, written once in the store with an increasing id, in
 * the same transaction as the change it describes (store/sqlite-store.ts), and streamed to clients
 * as Server-Sent Events (control/event-routes.ts). Pure: shapes and the SSE wire format only.
 *
 *   run.created run.status run.steps        a run of the deploy process
 *   rollout.started rollout.finished         a rollout of a revision
 *   rollout.step rollout.analysis            a stepped rollout moved (step, weight) / its analysis verdict changed
 *   rollout.command                          a person's promote / promote-full / abort, recorded for the planner
 *   instance.placed instance.desired instance.state instance.removed
 *   deploy.revision deploy.activated         a revision recorded / made the serving one
 *   deploy.plan                              a plan the applier committed (what it placed, stopped, activated)
 *   node.registered node.scheduling node.status
 *   experiment.started experiment.ended      an A/B experiment (core/experiment.ts)
 *   autoscale.changed                        the autoscaler set the replica count (from, to, reason)
 *   certificate.changed                      a host's certificate was stored or removed (host, change):
 *                                            every replica serves the stored set again
 */
export type EventKind =
  | 'run.created'
  | 'run.status'
  | 'run.steps'
  | 'rollout.started'
  | 'rollout.finished'
  | 'rollout.step'
  | 'rollout.analysis'
  | 'rollout.command'
  | 'instance.placed'
  | 'instance.desired'
  | 'instance.state'
  | 'instance.removed'
  | 'deploy.revision'
  | 'deploy.activated'
  | 'deploy.plan'
  | 'node.registered'
  | 'node.scheduling'
  | 'node.status'
  | 'experiment.started'
  | 'experiment.ended'
  | 'autoscale.changed'
  | 'certificate.changed';

/** An event before the store gives it its id. */
export interface NewEvent {
  readonly kind: EventKind;
  /** The app it concerns; undefined for node events. */
  readonly app: string | undefined;
  /** Wall-clock ms, for display. */
  readonly time: number;
  readonly payload: Readonly<Record<string, unknown>>;
}

export interface PilotEvent extends NewEvent {
  /** Increasing across the whole feed; a client resumes after the last id it saw. */
  readonly id: number;
}

/** One SSE frame: `id:` the event id, `event:` its kind, `data:` the event as one line of JSON. */
export function sseFrame(e: PilotEvent): string {
  return `id: ${e.id}\nevent: ${e.kind}\ndata: ${JSON.stringify({ id: e.id, time: e.time, kind: e.kind, app: e.app ?? null, payload: e.payload })}\n\n`;
}

/** Why a resume cannot continue from the id the client gave: it must re-read state, then follow from `lastId`. */
export interface EventReset {
  readonly reason: 'expired' | 'unknown';
  readonly requested: number;
  readonly lastId: number;
}

/** The reset frame: its id is where the client continues once it has re-read state. */
export function sseReset(r: EventReset): string {
  const why =
    r.reason === 'expired'
      ? `events after ${r.requested} are no longer kept (retention); re-read the state, then follow from ${r.lastId}`
      : `event id ${r.requested} is unknown to this server (never written: another server or a restored database); re-read the state, then follow from ${r.lastId}`;
  return `id: ${r.lastId}\nevent: reset\ndata: ${JSON.stringify({ ...r, message: why })}\n\n`;
}

/**
 * Where a resume after `requested` stands against what the store holds: `lastId` the highest id
 * ever written, `trimmedThrough` the highest id retention deleted (0: none).
 */
export function resumeCheck(requested: number, bounds: { lastId: number; trimmedThrough: number }): EventReset | undefined {
  if (requested > bounds.lastId) return { reason: 'unknown', requested, lastId: bounds.lastId };
  if (requested < bounds.trimmedThrough) return { reason: 'expired', requested, lastId: bounds.lastId };
  return undefined;
}
