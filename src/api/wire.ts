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
