/**
 * Who owns an app's replica count. `app.replicas` (the store) is the one number the planner reads;
 * it records who set it last: `config` (pilot.yaml `replicas`, applied by a deploy), `scale`
 * (`pilot scale`), or later `autoscaler`. pilot.yaml seeds the count when the app is created, and
 * afterwards moves it only when its own value differs from the previous deploy's (or, for an app
 * made by `pilot apps add`, from the default): a deploy with an unchanged pilot.yaml never undoes a
 * `pilot scale`; a changed value is applied and logged. While an autoscaler owns the count, a
 * changed pilot.yaml value is recorded in the config but not applied.
 *
 * pilot.yaml `autoscale` (the third argument; core/autoscale-config.ts): a deploy with it hands the
 * count to the autoscaler (source `autoscaler`), keeping the count it finds, brought within the new
 * [min, max] (a new app starts at `replicas`, else at min). A deploy without it, of an app the
 * autoscaler owned, hands the count back to pilot.yaml where the autoscaler left it (as Kubernetes
 * does when an HPA is deleted): the next changed `replicas` or `pilot scale` moves it.
 */
export type ReplicasSource = 'config' | 'scale' | 'autoscaler';

export interface ReplicasDecision {
  readonly replicas: number;
  readonly source: ReplicasSource;
  /** The deploy changes the count (to be logged with `why`). */
  readonly changed: boolean;
  readonly why: string;
}

/** pilot.yaml `autoscale` bounds, as replicasOnDeploy reads them. */
export interface AutoscaleBounds {
  readonly min: number;
  readonly max: number;
}

/**
 * The replica count after a deploy whose pilot.yaml says `configReplicas` and `autoscale` (null:
 * none; undefined: not told, the count is decided on `replicas` alone). Pure.
 */
export function replicasOnDeploy(
  existing: { readonly replicas: number; readonly source: ReplicasSource; readonly configReplicas: number } | undefined,
  configReplicas: number,
  autoscale?: AutoscaleBounds | null,
): ReplicasDecision {
  if (autoscale) return autoscaledOnDeploy(existing, configReplicas, autoscale);
  if (autoscale === null && existing?.source === 'autoscaler') {
    return {
      replicas: existing.replicas,
      source: 'config',
      changed: false,
      why: `autoscale removed from pilot.yaml: the count stays where the autoscaler left it (${existing.replicas}); pilot.yaml replicas or \`pilot scale\` move it from now on`,
    };
  }
  if (!existing)
    return { replicas: configReplicas, source: 'config', changed: true, why: `first deploy: pilot.yaml replicas ${configReplicas}` };
  if (existing.configReplicas === configReplicas) {
    return {
      replicas: existing.replicas,
      source: existing.source,
      changed: false,
      why: `pilot.yaml replicas unchanged (${configReplicas}); the count stays ${existing.replicas} (set by ${existing.source})`,
    };
  }
  if (existing.source === 'autoscaler') {
    return {
      replicas: existing.replicas,
      source: 'autoscaler',
      changed: false,
      why: `pilot.yaml replicas changed to ${configReplicas}, but the autoscaler owns the count (${existing.replicas})`,
    };
  }
  return {
    replicas: configReplicas,
    source: 'config',
    changed: configReplicas !== existing.replicas,
    why: `pilot.yaml replicas changed from ${existing.configReplicas} to ${configReplicas}: applied (the count was ${existing.replicas}, set by ${existing.source})`,
  };
}

/** A deploy of an app with `autoscale`: the autoscaler owns the count, kept within [min, max]. */
function autoscaledOnDeploy(
  existing: { readonly replicas: number; readonly source: ReplicasSource } | undefined,
  configReplicas: number,
  b: AutoscaleBounds,
): ReplicasDecision {
  const within = (n: number): number => Math.min(b.max, Math.max(b.min, n));
  if (!existing) {
    const n = within(configReplicas);
    return { replicas: n, source: 'autoscaler', changed: true, why: `first deploy: autoscale ${b.min}-${b.max} starts at ${n}` };
  }
  const n = within(existing.replicas);
  const bounded = n === existing.replicas ? '' : `, brought within min ${b.min} to max ${b.max}`;
  return {
    replicas: n,
    source: 'autoscaler',
    changed: n !== existing.replicas,
    why:
      existing.source === 'autoscaler'
        ? `the autoscaler owns the count: ${existing.replicas} kept${bounded ? ` and${bounded.slice(1)} (${n})` : ''}`
        : `autoscale in pilot.yaml: the autoscaler owns the count from now on, starting from ${n} (was ${existing.replicas}, set by ${existing.source}${bounded})`,
  };
}
