/**
 * Who owns an app's replica count. `app.replicas` (the store) is the one number the planner reads;
 * it records who set it last: `config` (pilot.yaml `replicas`, applied by a deploy), `scale`
 * (`pilot scale`), or later `autoscaler`. pilot.yaml seeds the count when the app is created, and
 * afterwards moves it only when its own value differs from the previous deploy's (or, for an app
 * made by `pilot apps add`, from the default): a deploy with an unchanged pilot.yaml never undoes a
 * `pilot scale`; a changed value is applied and logged. While an autoscaler owns the count, a
 * changed pilot.yaml value is recorded in the config but not applied (the autoscaler's bounds will
 * come from pilot.yaml then).
 */
export type ReplicasSource = 'config' | 'scale' | 'autoscaler';

export interface ReplicasDecision {
  readonly replicas: number;
  readonly source: ReplicasSource;
  /** The deploy changes the count (to be logged with `why`). */
  readonly changed: boolean;
  readonly why: string;
}

/** The replica count after a deploy whose pilot.yaml says `configReplicas`. Pure. */
export function replicasOnDeploy(
  existing: { readonly replicas: number; readonly source: ReplicasSource; readonly configReplicas: number } | undefined,
  configReplicas: number,
): ReplicasDecision {
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
