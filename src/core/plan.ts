/**
 * Plans as values. `planAppChanges` turns a snapshot of one app (its row, running rollout,
 * instances with their nodes' status, the cluster as the scheduler sees it) into a `Plan`: every
 * change the control plane should make for it, decided here and nowhere else, and the version of
 * the state it was decided against. Pure: no I/O, no clock, no randomness (instance ids are given
 * by the applier when it commits).
 *
 *   snapshot ─► planAppChanges ─► Plan ─► applier (control/applier.ts, inside the single writer):
 *                                          basis still current and nodes still schedulable?
 *                                            yes ─► commit everything in one transaction
 *                                            no  ─► reject as stale; the app is planned again
 *
 * What a plan decides, in order:
 *   1. lost: instances on a down node are stopped (not release phases: see below), and planned
 *      without, so their replacements are placed on live nodes;
 *   2. the rollout planner (core/rollout.ts): desired-state changes, activation, the rollout's end;
 *      its `create`/`release` actions become placements by the scheduler (core/scheduler.ts);
 *   3. moves: instances on a draining node keep serving, hidden from the rollout planner (so it
 *      places replacements), and are drained once enough instances of the active revision are
 *      ready elsewhere.
 */
import type { Verdict } from './analysis.js';
import { variantReplicas } from './experiment.js';
import { planApp, type Desired, type PlannerInput, type PlannerInstance } from './rollout.js';
import { schedule, type PlacementRequest, type SchedulerNode } from './scheduler.js';

/** One instance of the app, with what its node is doing. */
export interface SnapshotInstance extends PlannerInstance {
  readonly nodeId: string;
  readonly kind: 'web' | 'release';
  /** Its node is down (its instances are lost). */
  readonly nodeDown: boolean;
  /** Its node is draining (`pilot nodes drain`): its instances move elsewhere. */
  readonly nodeDraining: boolean;
}

export interface AppSnapshot {
  readonly app: {
    readonly name: string;
    readonly replicas: number;
    readonly activeRevision: number | undefined;
    /** Blue/green keepPrevious: the previous revision, whose instances stay up while its time runs. */
    readonly keepRevision?: number | undefined;
    /** A running A/B experiment: its variant revision keeps instances too (core/rollout.ts). */
    readonly experiment?: { readonly revision: number; readonly split: number } | undefined;
  };
  /** The running rollout; `id` identifies it in the basis. */
  readonly rollout: (NonNullable<PlannerInput['rollout']> & { readonly id: number }) | undefined;
  readonly instances: readonly SnapshotInstance[];
  /** The fixed port of the target revision when old and new cannot share a node's port (recreate). */
  readonly fixedPort: number | undefined;
  /** What an instance of the target revision needs of a node (count and fixedPort are set per placement). */
  readonly placement: Omit<PlacementRequest, 'app' | 'count' | 'fixedPort'>;
  /** The cluster as the scheduler sees it; only read when something is placed. */
  readonly nodes: readonly SchedulerNode[];
  readonly drainMs: number;
  readonly maxDrainMs: number;
  readonly crashLoopRestarts: number;
  /** Instances the previous pass could not place, and why: a ready timeout then says so. */
  readonly unplacedBefore?: { readonly count: number; readonly reason: string } | undefined;
  /** The state version (`basisOf`) of what this snapshot was read from. */
  readonly basis: string;
}

export interface PlannedPlacement {
  readonly revision: number;
  readonly nodeId: string;
  readonly kind: 'web' | 'release';
}
export interface DesiredChange {
  readonly id: string;
  readonly desired: Desired;
  /** planner: the rollout planner; lost: its node is down; moved: off a draining node. */
  readonly why: 'planner' | 'lost' | 'moved';
}

/** Every change for one app, decided against one state version. */
export interface Plan {
  readonly app: string;
  readonly basis: string;
  readonly rolloutId: number | undefined;
  readonly placements: readonly PlannedPlacement[];
  /** Desired-state changes in order (a later one for the same instance wins). */
  readonly desired: readonly DesiredChange[];
  readonly activate: number | undefined;
  readonly finish: { readonly status: 'succeeded' | 'failed'; readonly reason: string | undefined } | undefined;
  /** First placement of an app with volumes: they live on this node from now on. */
  readonly volumes: { readonly names: readonly string[]; readonly nodeId: string } | undefined;
  /** Instances that could not be placed, and why. */
  readonly unplaced: { readonly count: number; readonly reason: string } | undefined;
  /** A stepped rollout's new progress (step, weight; `restart`: its transition time is now; a verdict recorded). */
  readonly progress?: PlannedProgress | undefined;
}

export interface PlannedProgress {
  readonly step: number;
  readonly weight: number;
  readonly restart: boolean;
  readonly clearCommand: boolean;
  readonly verdict: Verdict | undefined;
}

/** Whether a plan changes nothing. */
export function isEmptyPlan(p: Plan): boolean {
  return (
    p.placements.length === 0 &&
    p.desired.length === 0 &&
    p.activate === undefined &&
    p.finish === undefined &&
    p.volumes === undefined &&
    p.progress === undefined
  );
}

/** The fields of an app's rows a plan depends on; the applier compares them before committing. */
export interface BasisInput {
  readonly app: { readonly activeRevision: number | undefined; readonly replicas: number } | undefined;
  readonly rolloutId: number | undefined;
  readonly instances: readonly {
    readonly id: string;
    readonly revision: number;
    readonly nodeId: string;
    readonly desired: string;
    readonly state: string;
    readonly restarts: number;
    readonly kind?: string | undefined;
  }[];
}

/**
 * The state version of one app: a canonical string of what the planner read (the app's active
 * revision and replicas, its running rollout, each instance's revision, node, desired and reported
 * state). Any write to those rows between planning and applying changes it.
 */
export function basisOf(s: BasisInput): string {
  const rows = [...s.instances]
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((i) => [i.id, i.revision, i.nodeId, i.desired, i.state, i.restarts, i.kind ?? 'web']);
  return JSON.stringify({
    app: s.app ? [s.app.activeRevision ?? null, s.app.replicas] : null,
    rollout: s.rolloutId ?? null,
    instances: rows,
  });
}

/** Plan every change for one app. Idempotent: committing the plan and planning again converges. */
export function planAppChanges(s: AppSnapshot): Plan {
  const desired: DesiredChange[] = [];
  // 1. Lost with their node. A release phase is never run twice: one on a down node is left alone
  // (its node may come back and report it ended); the planner fails the rollout at its deadline.
  for (const i of s.instances) {
    if (i.desired !== 'stop' && i.nodeDown && i.kind !== 'release') desired.push({ id: i.id, desired: 'stop', why: 'lost' });
  }
  const movers = s.instances.filter((i) => i.nodeDraining && i.desired === 'run' && i.kind !== 'release' && !i.nodeDown);
  const moverIds = new Set(movers.map((m) => m.id));
  const visible = s.instances.filter((i) => (!i.nodeDown || i.kind === 'release') && !moverIds.has(i.id));

  // 2. The rollout planner.
  const actions = planApp({
    replicas: s.app.replicas,
    activeRevision: s.app.activeRevision,
    fixedPort: s.fixedPort !== undefined,
    rollout: s.rollout,
    instances: visible,
    drainMs: s.drainMs,
    maxDrainMs: s.maxDrainMs,
    crashLoopRestarts: s.crashLoopRestarts,
    keepRevision: s.app.keepRevision,
    experiment: s.app.experiment,
  });
  let progress: PlannedProgress | undefined;
  const placements: PlannedPlacement[] = [];
  let activate: number | undefined;
  let finish: Plan['finish'];
  let volumes: Plan['volumes'];
  let unplaced: Plan['unplaced'];
  // Later placements in this plan take room on the nodes too.
  let nodes = s.nodes;
  for (const a of actions) {
    switch (a.type) {
      case 'release':
      case 'create': {
        const kind = a.type === 'release' ? 'release' : 'web';
        const count = a.type === 'release' ? 1 : a.count;
        const fixedPort = kind === 'release' ? undefined : s.fixedPort;
        const vol = s.placement.volumes;
        const p = schedule(nodes, { ...s.placement, app: s.app.name, count, fixedPort });
        // The first placement of an app with volumes decides where they live, for good (until `pilot volumes forget`).
        if (vol && vol.node === undefined && p.nodeIds.length > 0) volumes = { names: vol.names, nodeId: p.nodeIds[0]! };
        for (const nodeId of p.nodeIds) placements.push({ revision: a.revision, nodeId, kind });
        if (p.unplaced > 0) unplaced = { count: (unplaced?.count ?? 0) + p.unplaced, reason: p.reason ?? 'no room' };
        nodes = withPlaced(nodes, s.app.name, p.nodeIds, { fixedPort, cpu: s.placement.cpu, memoryMb: s.placement.memoryMb });
        break;
      }
      case 'desire':
        desired.push({ id: a.id, desired: a.desired, why: 'planner' });
        break;
      case 'activate':
        activate = a.revision;
        break;
      case 'progress':
        progress = {
          step: a.step,
          weight: a.weight,
          restart: a.restart || (progress?.restart ?? false),
          clearCommand: a.clearCommand || (progress?.clearCommand ?? false),
          verdict: a.verdict ?? progress?.verdict,
        };
        break;
      case 'finish': {
        // A rollout that timed out because instances could not be placed says why (e.g. the volume's
        // node is down; a rolling surge on a fleet without room). Both deadlines' reasons, by their words.
        const before = s.unplacedBefore;
        const explain = a.status === 'failed' && before !== undefined && /was not ready within|made no progress for/.test(a.reason ?? '');
        finish = {
          status: a.status,
          reason: explain ? `${a.reason}: ${before.count} instance(s) could not be placed: ${before.reason}` : a.reason,
        };
        break;
      }
    }
  }

  // 3. Moves off draining nodes: once the active revision (after this plan) has enough ready
  // instances elsewhere, the movers drain (the router stops sending them new requests first).
  if (movers.length > 0) {
    const last = new Map(desired.map((d) => [d.id, d.desired]));
    const active = activate ?? s.app.activeRevision;
    const readyElsewhere = s.instances.filter(
      (i) => !i.nodeDraining && (last.get(i.id) ?? i.desired) === 'run' && i.state === 'ready' && i.revision === active,
    ).length;
    // During an experiment the active revision keeps only its share of the replicas.
    const e = s.rollout === undefined ? s.app.experiment : undefined;
    const needed = e !== undefined && e.revision !== active ? variantReplicas(s.app.replicas, e.split).a : s.app.replicas;
    if (readyElsewhere >= needed) for (const m of movers) desired.push({ id: m.id, desired: 'drain', why: 'moved' });
  }
  return {
    app: s.app.name,
    basis: s.basis,
    rolloutId: s.rollout?.id,
    placements,
    desired,
    activate,
    finish,
    volumes,
    unplaced,
    ...(progress === undefined ? {} : { progress }),
  };
}

/** The snapshot with one more instance of `app` on each of the given node ids (repeats count). */
function withPlaced(
  nodes: readonly SchedulerNode[],
  app: string,
  nodeIds: readonly string[],
  i: { fixedPort: number | undefined; cpu?: number | undefined; memoryMb?: number | undefined },
): readonly SchedulerNode[] {
  if (nodeIds.length === 0) return nodes;
  const added = new Map<string, number>();
  for (const id of nodeIds) added.set(id, (added.get(id) ?? 0) + 1);
  return nodes.map((n): SchedulerNode => {
    const k = added.get(n.id);
    if (k === undefined) return n;
    const one = { app, fixedPort: i.fixedPort, cpu: i.cpu, memoryMb: i.memoryMb };
    if (!n.usage) return { ...n, instances: [...n.instances, ...Array.from({ length: k }, () => one)] };
    const u = n.usage;
    const ports = new Set(u.fixedPorts);
    if (i.fixedPort !== undefined) ports.add(i.fixedPort);
    return {
      ...n,
      usage: {
        cpu: u.cpu + k * (i.cpu ?? 0),
        memoryMb: u.memoryMb + k * (i.memoryMb ?? 0),
        count: u.count + k,
        perApp: new Map(u.perApp).set(app, (u.perApp.get(app) ?? 0) + k),
        fixedPorts: ports,
      },
    };
  });
}

/** What a deploy (or rollback) would do, without doing it: where the new instances go, what stops. */
export interface DeployPreview {
  readonly placements: readonly { readonly nodeId: string; readonly node: string }[];
  readonly unplaced: { readonly count: number; readonly reason: string } | undefined;
  /** The app's current instances the rollout retires (drained, then stopped) once the new ones are ready (or first, with a fixed port shared by old and new). */
  readonly stops: readonly { readonly id: string; readonly revision: number; readonly nodeId: string }[];
  /** The old instances stop before the new ones start (a fixed port without a network namespace per instance). */
  readonly recreate: boolean;
}

/**
 * Preview a rollout to `toRevision` (a deploy's next revision or a rollback's target): the same
 * planner, on the cluster without the app's own instances (the rollout retires them, so their room
 * is counted as free), with the rollout just started.
 */
export function previewDeploy(
  s: Omit<AppSnapshot, 'rollout' | 'basis' | 'unplacedBefore'> & { readonly toRevision: number },
): DeployPreview {
  const nodes = s.nodes.map((n): SchedulerNode => ({ ...n, usage: undefined, instances: n.instances.filter((i) => i.app !== s.app.name) }));
  // The new revision's instances, planned as if the old ones were already gone.
  const plan = planAppChanges({
    ...s,
    nodes,
    instances: [],
    basis: '',
    unplacedBefore: undefined,
    rollout: { id: 0, toRevision: s.toRevision, elapsedMs: 0, readyTimeoutMs: 60_000, release: false },
  });
  const names = new Map(s.nodes.map((n) => [n.id, n.name]));
  const stops = s.instances
    .filter((i) => i.desired === 'run' && i.kind !== 'release')
    .map((i) => ({ id: i.id, revision: i.revision, nodeId: i.nodeId }));
  return {
    placements: plan.placements.map((p) => ({ nodeId: p.nodeId, node: names.get(p.nodeId) ?? p.nodeId })),
    unplaced: plan.unplaced,
    stops,
    recreate: s.fixedPort !== undefined && stops.length > 0,
  };
}
