/** Types of the REST API's answers that both the server and its clients (CLI, pipeline) use. */

/** A registry as the API shows it; `password` only when asked for credentials. */
export interface RegistryView {
  readonly url: string;
  readonly address: string;
  readonly username: string | null;
  readonly hasPassword: boolean;
  readonly password?: string;
  readonly publish: boolean;
  readonly updatedAt: number;
}

/**
 * What a deploy or a rollback would do (`?dryRun=true`): the revision it would make (or roll back
 * to), the replica count and who owns it, where new instances would go, what would stop.
 */
export interface DeployPlanView {
  readonly dryRun: true;
  readonly app: string;
  readonly revision: number;
  readonly replicas: { readonly replicas: number; readonly source: 'config' | 'scale' | 'autoscaler'; readonly changed: boolean; readonly why: string };
  readonly placements: readonly { readonly node: string; readonly nodeId: string }[];
  readonly unplaced: { readonly count: number; readonly reason: string } | null;
  readonly stops: readonly { readonly id: string; readonly revision: number; readonly node: string }[];
  /** The old instances stop before the new ones start (a fixed port shared on a node). */
  readonly recreate: boolean;
  readonly notes: readonly string[];
}
