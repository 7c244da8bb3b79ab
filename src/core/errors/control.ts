import type { ErrorEntries } from './entry.js';

const ROUTER_PROCESS_HINT =
  'The router process is started and supervised by `pilot up` / `pilot server`; its log is $PILOT_HOME/logs/router.log.';
const RECORDED_RUNTIME_HINT =
  'Deploy runtimes Pilot has recorded (`pilot runtimes`); `pilot run` records the one it builds with, `pilot runtimes add` imports one.';

/** Errors raised in src/control/. */
export const controlErrors = {
  invalidStoreUrl: {
    code: 'invalid_argument',
    message: (p: { from: string; value: string }) => `${p.from} ${p.value}: not a store Pilot knows`,
    hint: 'Give postgres://USER@HOST[:PORT]/DATABASE (or postgresql://…), or leave it out for SQLite in $PILOT_HOME/pilot.db.',
  },
  storePasswordInArgv: {
    code: 'invalid_argument',
    message: (p: { url: string }) =>
      `--store ${p.url}: the URL holds a password, and a command line is readable by every user of the machine`,
    hint: 'Put the password in PGPASSWORD or ~/.pgpass (mode 0600), or the whole URL in a file given with --store-file (mode 0600).',
  },
  storeFileUnreadable: {
    code: 'invalid_argument',
    message: (p: { file: string; message: string }) => `--store-file ${p.file}: ${p.message}`,
    hint: 'Give a file (mode 0600) holding one line: postgres://USER:PASSWORD@HOST[:PORT]/DATABASE.',
  },
  storeWaitExpired: {
    code: 'unavailable',
    message: (p: { url: string; seconds: number; message: string }) =>
      `the PostgreSQL database ${p.url} did not answer within ${p.seconds} s: ${p.message}`,
    hint: 'Check that PostgreSQL runs and accepts connections there (pg_isready -h HOST -p PORT); PILOT_STORE_WAIT_MS sets how long a start waits for it (default 60000).',
  },
  replicaSecretsDiffer: {
    code: 'conflict',
    message: (p: { home: string; files: string }) =>
      `${p.home}: ${p.files} differ from what the other replicas on this database use; this replica would not open their secrets or accept their tokens`,
    hint: "Stop it, copy admin-token, join-token, router-token and secret.key from a running replica's $PILOT_HOME into this one (mode 0600), and start it again.",
  },
  backupOnPostgres: {
    code: 'bad_request',
    message: 'this control plane keeps its state in PostgreSQL: `pilot backup` copies a SQLite database only',
    hint: 'Back PostgreSQL up with its own tools: pg_dump -Fc -d DATABASE -f pilot.dump (restore: pg_restore -d NEWDATABASE pilot.dump).',
  },
  invalidRequest: {
    code: 'bad_request',
    message: (p: { message: string }) => `invalid request: ${p.message}`,
  },
  requestBodyTooLarge: {
    code: 'too_large',
    message: 'request body too large',
  },
  unsupportedContentType: {
    code: 'bad_request',
    message: (p: { message: string }) => `unsupported content type: ${p.message}`,
    hint: 'JSON routes take application/json; artifact uploads take application/octet-stream.',
  },
  internalError: {
    code: 'internal',
    message: 'internal error',
  },
  noRoute: {
    code: 'not_found',
    message: (p: { method: string; url: string }) => `no route ${p.method} ${p.url}`,
    hint: 'The README lists the API routes.',
  },
  invalidRouterToken: {
    code: 'unauthorized',
    message: 'missing or invalid router token',
    hint: "A router authenticates with $PILOT_HOME/router-token; a node's router (pilot agent --router-port) with its node's credential.",
  },
  appNotFound: {
    code: 'app_not_found',
    message: (p: { app: string }) => `app "${p.app}" not found`,
  },
  routerTrafficUnreadable: {
    code: 'unavailable',
    message: 'the router process answered traffic figures in a form this control plane does not read',
    hint: 'Restart the router with the same Pilot version as the control plane (`pilot down`, then `pilot up`).',
  },
  repositoryInsidePilotHome: {
    code: 'bad_request',
    message: (p: { repo: string; home: string }) =>
      `repository URL ${JSON.stringify(p.repo)} refused: it is inside Pilot's home (${p.home})`,
    hint: "Point --repo at the app's repository, not at Pilot's own state.",
  },
  invalidBranch: {
    code: 'bad_request',
    message: (p: { branch: string }) => `branch ${JSON.stringify(p.branch)} is not a valid git branch name`,
  },
  invalidSecretName: {
    code: 'invalid_secret_name',
    message: (p: { name: string }) => `secret name ${JSON.stringify(p.name)} must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)`,
  },
  runNotFoundById: {
    code: 'run_not_found',
    message: (p: { id: string }) => `run ${JSON.stringify(p.id)} not found`,
  },
  buildSecretsForFinishedRun: {
    code: 'bad_request',
    message: (p: { id: number; status: string }) => `run ${p.id} is ${p.status}: build secrets are given to runs in progress only`,
  },
  appHasNoSecret: {
    code: 'not_found',
    message: (p: { app: string; secret: string }) => `app "${p.app}" has no secret ${JSON.stringify(p.secret)}`,
  },
  registryCredentialsHalf: {
    code: 'bad_request',
    message: 'give both a user name and a password, or neither',
    hint: '`pilot registry set URL --username U --password-stdin` (the password is read from stdin).',
  },
  registryDeleteNeedsUrl: {
    code: 'bad_request',
    message: 'say which registry: DELETE /api/v1/registries?url=http://HOST:PORT',
  },
  noRegistryConfigured: {
    code: 'not_found',
    message: (p: { url: string }) => `no registry ${p.url} is configured`,
    hint: 'List them with `pilot registry show`.',
  },
  invalidNodeCredential: {
    code: 'unauthorized',
    message: 'missing or invalid node credential',
    hint: 'Register the agent again with a join token.',
  },
  invalidJoinToken: {
    code: 'unauthorized',
    message: 'missing, invalid or revoked join token',
    hint: 'Create one on the control plane with `pilot token create --join`.',
  },
  nodeNameTaken: {
    code: 'conflict',
    message: (p: { name: string }) => `a node named "${p.name}" is already registered`,
    hint: 'Give this agent another --name, or remove the old node.',
  },
  invalidVolumeName: {
    code: 'bad_request',
    message: (p: { one: string }) => `volume name ${JSON.stringify(p.one)} is not valid`,
  },
  volumeNotPlaced: {
    code: 'not_found',
    message: (p: { name: string; one: string }) => `app "${p.name}" has no placed volume "${p.one}"`,
    hint: (p: { name: string; one: string }) => `\`pilot volumes ${p.name}\` lists its volumes.`,
  },
  appNotFoundSeeApps: {
    code: 'not_found',
    message: (p: { app: string }) => `app "${p.app}" not found`,
    hint: 'See `pilot apps`.',
  },
  invalidInstanceId: {
    code: 'bad_request',
    message: (p: { only: string }) => `instance: not an instance id (${JSON.stringify(p.only)})`,
    hint: 'Instance ids are shown by `pilot status APP` and `pilot logs APP --previous`.',
  },
  instanceNotFound: {
    code: 'not_found',
    message: (p: { only: string; name: string }) =>
      `instance ${p.only} of app "${p.name}" not found (its logs are kept until the agent's cache GC)`,
    hint: 'See `pilot status APP` and `pilot logs APP --previous`.',
  },
  invalidGcKeep: {
    code: 'invalid_gc_request',
    message: (p: { maxGcKeep: number; v: unknown }) => `keep must be a whole number from 0 to ${p.maxGcKeep} (got ${JSON.stringify(p.v)})`,
  },
  gcBodyNotObject: {
    code: 'invalid_gc_request',
    message: 'the body must be a JSON object { dryRun?, keep? }',
  },
  gcUnknownField: {
    code: 'invalid_gc_request',
    message: (p: { k: string }) => `unknown field "${p.k}": the body takes dryRun and keep`,
  },
  gcInvalidDryRun: {
    code: 'invalid_gc_request',
    message: 'dryRun must be true or false',
  },
  artifactCollected: {
    code: 'artifact_collected',
    message: (p: { what: string; d: string }) => `${p.what}: artifact ${p.d} was garbage-collected`,
  },
  artifactMissingFor: {
    code: 'artifact_not_found',
    message: (p: { what: string; d: string }) => `${p.what}: artifact ${p.d} is not in the artifact repository`,
  },
  hostTaken: {
    code: 'host_taken',
    message: (p: { host: string; taken: string; name: string }) =>
      `host "${p.host}" belongs to app "${p.taken}"; app "${p.name}" cannot claim it`,
  },
  hostReserved: {
    code: 'host_taken',
    message: (p: { host: string; reserved: string; name: string }) =>
      `host "${p.host}" is reserved for an app named "${p.reserved}"; app "${p.name}" cannot claim it`,
  },
  notExactNodeVersion: {
    code: 'bad_request',
    message: (p: { v: string }) => `${JSON.stringify(p.v)} is not an exact Node.js version (like 22.23.3)`,
  },
  unsupportedPlatform: {
    code: 'unsupported_platform',
    message: (p: { name: string; supportedPlatforms: string }) =>
      `platform ${JSON.stringify(p.name)} is not supported: supported platforms are ${p.supportedPlatforms}`,
  },
  runtimeBlobMissing: {
    code: 'artifact_not_found',
    message: (p: { digest: string }) => `runtime blob ${p.digest} is not in the artifact repository`,
    hint: 'Upload the tarball first (PUT /api/v1/artifacts/DIGEST); `pilot runtimes add` does both.',
  },
  runtimeAlreadyRecorded: {
    code: 'conflict',
    message: (p: { v: string; p: string; digest: string }) =>
      `Node.js ${p.v} (${p.p}) is already recorded as ${p.digest}: a version's runtime never changes`,
    hint: 'The tarball differs from the one recorded; use the recorded one (`pilot runtimes`).',
  },
  runtimeNotCached: {
    code: 'not_found',
    message: (p: { v: string; p: string }) => `Node.js ${p.v} (${p.p}) is not in this Pilot's runtime cache`,
    hint: '`pilot run` fetches it from the npm registry; `pilot runtimes add VERSION --from FILE.tgz` imports it by hand.',
  },
  deployFieldMissing: {
    code: 'bad_request',
    message: (p: { field: 'artifact' | 'commit' }) => `a deploy request needs \`${p.field}\``,
    hint: 'Send { artifact: "sha256:…", commit: "<40-character SHA>", config } (`pilot run` does); only a dry run (?dryRun=true) may leave them out.',
  },
  deployCommitNotSha: {
    code: 'bad_request',
    message: (p: { commit: string }) => `commit must be a full 40-character SHA (got ${JSON.stringify(p.commit)})`,
  },
  configNameMismatch: {
    code: 'invalid_config',
    message: (p: { configName: string; app: string }) => `config name "${p.configName}" does not match the app "${p.app}" in the URL`,
  },
  dockerDeployNeedsImage: {
    code: 'bad_request',
    message: 'runtime docker needs `image` ({ id, ref or archive }) in the deploy request',
  },
  imageNeedsRefOrArchive: {
    code: 'bad_request',
    message: 'image needs `ref` (pushed to a registry) or `archive` (an image tarball in the artifact repository)',
  },
  nodeOnlyForProcess: {
    code: 'bad_request',
    message: '`node` applies to runtime process only; a container gets Node.js from its image',
  },
  releaseNeedsProcess: {
    code: 'invalid_config',
    message: 'release: a release phase needs runtime: process for now',
    hint: "Run migrations from the image's entrypoint, or remove `release` (pilot.yaml) / the Procfile `release:` line.",
  },
  artifactNotImage: {
    code: 'bad_request',
    message: (p: { digest: undefined | string }) =>
      `artifact must be the image archive's digest, or the image id when pushed to a registry (got ${p.digest})`,
  },
  imageOnlyForDocker: {
    code: 'bad_request',
    message: '`image` applies to runtime docker only (set `runtime: docker` in pilot.yaml)',
  },
  artifactMissing: {
    code: 'artifact_not_found',
    message: (p: { digest: string }) => `artifact ${p.digest} is not in the artifact repository`,
  },
  runtimeArtifactMissing: {
    code: 'artifact_not_found',
    message: (p: { version: string; digest: string }) => `Node.js runtime ${p.version} (${p.digest}) is not in the artifact repository`,
  },
  npmArtifactMissing: {
    code: 'artifact_not_found',
    message: (p: { npm: string; digest: string; node: string }) =>
      `npm ${p.npm} (${p.digest}), paired with Node.js ${p.node}, is not in the artifact repository`,
  },
  runOfAppNotFound: {
    code: 'run_not_found',
    message: (p: { runId: number; name: string }) => `run ${p.runId} of app "${p.name}" not found`,
  },
  deploySuperseded: {
    code: 'superseded',
    message: (p: { name: string; latest: number; fence: number }) =>
      `deploy skipped: a newer push of "${p.name}" is already deployed (fence ${p.latest} > ${p.fence})`,
  },
  rollbackWithoutPrevious: {
    code: 'revision_not_found',
    message: (p: { name: string; activeRevision: number | string }) =>
      `app "${p.name}" has no revision before ${p.activeRevision} to roll back to`,
  },
  revisionNotFoundForRollback: {
    code: 'revision_not_found',
    message: (p: { name: string; to: number }) => `app "${p.name}" has no revision ${p.to}`,
  },
  revisionAlreadyActive: {
    code: 'conflict',
    message: (p: { to: number }) => `revision ${p.to} is already active`,
  },
  invalidRequestBody: {
    code: 'bad_request',
    message: (p: { path: string; message: string }) => `invalid request: body${p.path} ${p.message}`,
  },
  rolloutAppNotFound: {
    code: 'not_found',
    message: (p: { id: string; name: string }) => `rollout ${p.id} of app "${p.name}" not found`,
  },
  replicasMustWholeNumber: {
    code: 'bad_request',
    message: (p: { maxReplicas: number; n: unknown }) =>
      `replicas must be a whole number from 0 to ${p.maxReplicas} (got ${JSON.stringify(p.n)})`,
  },
  volumesPinReplicas: {
    code: 'invalid_config',
    message: (p: { name: string; port: number; n: number }) =>
      `app "${p.name}" has volumes, so all its replicas run on the volume's node, and a fixed port (${p.port}) allows one instance per node: ${p.n} replicas cannot be placed`,
    hint: 'Remove `port:` from pilot.yaml (instances then get $PORT) and deploy, then scale.',
  },
  nodeNotFound: {
    code: 'node_not_found',
    message: (p: { name: string }) => `node "${p.name}" not found`,
    hint: 'List nodes with `pilot nodes`.',
  },
  orphanNotFound: {
    code: 'not_found',
    message: (p: { id: string }) => `no node reports an orphan instance "${p.id}"`,
    hint: 'List them with `pilot orphans`.',
  },
  lastReadyNode: {
    code: 'conflict',
    message: (p: { name: string }) => `node "${p.name}" is the last ready node: draining it would leave its instances nowhere to go`,
    hint: 'Add a node first, or pass --force to drain it anyway (its apps stop serving).',
  },
  joinTokenNotFound: {
    code: 'not_found',
    message: (p: { id: string }) => `no live join token ${JSON.stringify(p.id)}`,
    hint: 'List them with `pilot token list`.',
  },
  runNotFoundRaw: {
    code: 'run_not_found',
    message: (p: { raw: string }) => `run ${JSON.stringify(p.raw)} not found`,
  },
  runCommitNotSha: {
    code: 'bad_request',
    message: 'commit must be a full 40-character SHA',
  },
  runArtifactInvalid: {
    code: 'invalid_digest',
    message: 'artifact must be sha256:<64 hex>',
  },
  runLogTooLarge: {
    code: 'too_large',
    message: (p: { maxLogBytes: number }) => `run log is capped at ${p.maxLogBytes} MB`,
  },
  invalidEventId: {
    code: 'invalid_event_id',
    message: (p: { where: string; t: string }) => `${p.where} must be the id of an event (a whole number), not ${JSON.stringify(p.t)}`,
  },
  appNotFoundNoEvents: {
    code: 'app_not_found',
    message: (p: { app: string }) => `app "${p.app}" not found (and no events of it are kept)`,
  },
  pathSegmentNotAllowed: {
    code: 'bad_request',
    message: 'a ".." path segment is not allowed',
    hint: 'Names are 1-63 characters: lowercase letters, digits and "-".',
  },
  listenPortInUse: {
    code: 'port_in_use',
    message: (p: { what: string; host: string; port: number }) => `the ${p.what} cannot listen on ${p.host}:${p.port}: the port is in use`,
  },
  listenPermissionDenied: {
    code: 'port_in_use',
    message: (p: { what: string; host: string; port: number }) => `the ${p.what} may not listen on ${p.host}:${p.port} (permission denied)`,
    hint: 'Ports below 1024 need privileges; pick another port.',
  },
  listenAddressNotLocal: {
    code: 'address_not_local',
    message: (p: { what: string; host: string }) => `the ${p.what} cannot listen on ${p.host}: no such address on this machine`,
  },
  listenFailed: {
    code: 'internal',
    message: (p: { what: string; host: string; port: number; message: string }) =>
      `the ${p.what} cannot listen on ${p.host}:${p.port}: ${p.message}`,
  },
  invalidToken: {
    code: 'unauthorized',
    message: 'invalid token',
  },
  missingToken: {
    code: 'unauthorized',
    message: 'missing token: send "Authorization: Bearer <token>"',
  },
  sessionExpired: {
    code: 'unauthorized',
    message: 'the dashboard session has ended (signed out, expired, or the server restarted)',
    hint: 'Sign in again with the admin token ($PILOT_HOME/admin-token).',
  },
  csrfRefused: {
    code: 'forbidden',
    message: (p: { why: string }) => `request refused: ${p.why}`,
    hint: 'A state change through the dashboard session must come from the dashboard itself (same origin, with its x-pilot-csrf header). Scripts use "Authorization: Bearer <token>" instead of the cookie.',
  },
  dashboardNotBuilt: {
    code: 'not_found',
    message: (p: { dir: string }) => `the dashboard is not built (no index.html in ${p.dir})`,
    hint: 'Run `npm run build` in the Pilot folder (npm install runs it too), then reload.',
  },
  requestRefused: {
    code: 'bad_request',
    message: (p: { message: string | undefined }) => p.message ?? 'bad request',
  },
  invalidTrafficWindow: {
    code: 'bad_request',
    message: (p: { problem: string }) => p.problem,
    hint: 'Pass ?window= as a duration from 1s to 5m: 10s, 60s, 5m (default 60s).',
  },
  invalidTrafficEvery: {
    code: 'bad_request',
    message: (p: { value: string }) => `?every=${JSON.stringify(p.value.slice(0, 40))} is not a period of 1s to 60s`,
    hint: 'With Accept: text/event-stream, ?every= sets how often the figures are sent: 1s, 2s (default), 10s, 1m.',
  },
  noRouterProcess: {
    code: 'unavailable',
    message: (p: { home: string }) => `no router process is recorded in ${p.home}/router/router.json`,
    hint: ROUTER_PROCESS_HINT,
  },
  routerGaveNoTraffic: {
    code: 'unavailable',
    message: (p: { pid: number; admin: string; message: string }) =>
      `the router process (pid ${p.pid}, ${p.admin}) gave no traffic figures: ${p.message}`,
    hint: ROUTER_PROCESS_HINT,
  },
  nodeRouterGaveNoTraffic: {
    code: 'unavailable',
    message: (p: { node: string; url: string; message: string }) =>
      `the router of node ${p.node} (${p.url}) gave no traffic figures: ${p.message}`,
    hint: 'A node router that synced within the last minute is asked for its figures; check that the node answers on its router address (`pilot nodes`), or stop the node router (`pilot agent` without --router-port): the control plane forgets a silent router after 60 s.',
  },
  nodeRouterSilent: {
    code: 'unavailable',
    message: (p: { node: string }) => `node ${p.node} has no router that answers (its metrics cannot be read)`,
    hint: 'Start the agent with `--router-port N`; a node router counts once it synced within the last minute (`pilot nodes`, ROUTER column).',
  },
  cannotPlace: {
    code: 'unschedulable',
    message: (p: { name: string; reason: string; noEngine: boolean }) => `app "${p.name}" cannot be placed: ${p.reason}`,
    hint: (p: { name: string; reason: string; noEngine: boolean }) =>
      p.noEngine
        ? "Start the Docker engine on a node (`dockerd`, or `systemctl start docker`); its agent reports it within 10 s. `pilot nodes --json` shows each node's engine and its error."
        : undefined,
  },
  databaseMissing: {
    code: 'state_without_database',
    message: (p: { db: string; home: string; evidence: string }) =>
      `the state database ${p.db} is missing, but ${p.home} holds Pilot state (${p.evidence})`,
    hint:
      'Restore it with `pilot restore BACKUP-FILE`, or start with an empty database on purpose with `--fresh-database` ' +
      '(running apps keep running and are listed as orphans by `pilot orphans`; deploy them again to manage them).',
  },
  runtimeRecordedOtherwise: {
    code: 'runtime_not_recorded',
    message: (p: { version: string; recorded: string; digest: string }) =>
      `Node.js ${p.version} is recorded as ${p.recorded}, not ${p.digest}`,
    hint: RECORDED_RUNTIME_HINT,
  },
  runtimeNotRecorded: {
    code: 'runtime_not_recorded',
    message: (p: { version: string }) => `Node.js ${p.version} is not a recorded runtime`,
    hint: RECORDED_RUNTIME_HINT,
  },
  noRolloutToCommand: {
    code: 'no_rollout',
    message: (p: { app: string; verb: string }) => `app "${p.app}" has no rollout in progress to ${p.verb}`,
    hint: (p: { app: string; verb: string }) =>
      `\`pilot status ${p.app}\` shows the active revision; \`pilot rollback ${p.app}\` goes back to an earlier one.`,
  },
  rolloutHasNoSteps: {
    code: 'no_rollout',
    message: (p: { app: string; revision: number; strategy: string }) =>
      `the rollout of "${p.app}" to revision ${p.revision} is ${p.strategy}: only a canary has steps to promote`,
    hint: (p: { app: string; revision: number; strategy: string }) =>
      `It finishes by itself once the new revision is ready; \`pilot abort ${p.app}\` stops it.`,
  },
  rolloutJustEnded: {
    code: 'no_rollout',
    message: (p: { app: string; revision: number }) => `the rollout of "${p.app}" to revision ${p.revision} has just ended`,
  },
  appAutoscaled: {
    code: 'autoscaled',
    message: (p: { app: string; min: number; max: number; target: string; replicas: number }) =>
      `app "${p.app}" is autoscaled (min ${p.min}, max ${p.max}, ${p.target}): its replica count (${p.replicas}) is set by the autoscaler, not by \`pilot scale\``,
  },
  experimentSplitInvalid: {
    code: 'bad_request',
    message: (p: { split: unknown }) => `split must be a whole number from 0 to 100 (got ${JSON.stringify(p.split)})`,
    hint: "split is variant b's share of the traffic in percent: --split 50 sends half the users to b.",
  },
  experimentNeedsTwoRevisions: {
    code: 'experiment_conflict',
    message: (p: { app: string; count: number }) => `app "${p.app}" has ${p.count} revision(s); an experiment needs two`,
    hint: 'Deploy the variant first (`pilot run`), then start the experiment with the previous revision as b, or deploy again and compare.',
  },
  experimentNoActiveRevision: {
    code: 'experiment_conflict',
    message: (p: { app: string }) => `app "${p.app}" has no active revision yet (its first rollout has not finished)`,
  },
  experimentDuringRollout: {
    code: 'rollout_in_progress',
    message: (p: { app: string; revision: number }) =>
      `app "${p.app}" is rolling out revision ${p.revision}; start the experiment after it`,
  },
  experimentAlreadyRunning: {
    code: 'experiment_conflict',
    message: (p: { app: string; id: number; variant: number; split: number }) =>
      `app "${p.app}" already runs experiment #${p.id} (b = revision ${p.variant} at ${p.split}%)`,
  },
  experimentVariantNotFound: {
    code: 'revision_not_found',
    message: (p: { app: string; variant: number; revisions: string }) => `app "${p.app}" has no revision ${p.variant}`,
    hint: (p: { app: string; variant: number; revisions: string }) => `Its revisions: ${p.revisions} (\`pilot status ${p.app}\`).`,
  },
  experimentVariantIsActive: {
    code: 'bad_request',
    message: (p: { revision: number }) => `variant: revision ${p.revision} is already the active revision (variant a)`,
    hint: 'Variant b must be another revision than the active one: pass --variant b=REV with a revision `pilot status` lists.',
  },
  experimentRuntimeMismatch: {
    code: 'experiment_conflict',
    message: (p: { variant: number; variantRuntime: string; active: number; activeRuntime: string }) =>
      `revision ${p.variant} runs on the ${p.variantRuntime} runtime and the active revision ${p.active} on ${p.activeRuntime}: an experiment compares two revisions of one runtime`,
  },
  experimentFixedPort: {
    code: 'experiment_conflict',
    message: (p: { app: string }) => `app "${p.app}" listens on a fixed port: both variants cannot run side by side on a node`,
    hint: 'Remove `port:` from pilot.yaml (instances then get $PORT), deploy, and start the experiment again.',
  },
  experimentNoneRunning: {
    code: 'experiment_conflict',
    message: (p: { app: string }) => `app "${p.app}" runs no experiment`,
    hint: (p: { app: string }) => `Start one with \`pilot experiment start ${p.app} --variant b=REV --split 50\`.`,
  },
  certificateNotFound: {
    code: 'not_found',
    message: (p: { host: string }) => `no certificate for host "${p.host}"`,
    hint: 'List certificates with `pilot certs`; a host gets one when an app lists it in `hosts:` (or with `pilot certs set`).',
  },
  acmeNotConfigured: {
    code: 'bad_request',
    message: (p: { host: string }) => `cannot obtain a certificate for host "${p.host}": no ACME directory is configured`,
    hint: 'Start the server with PILOT_ACME_DIRECTORY (e.g. https://acme-v02.api.letsencrypt.org/directory) and PILOT_HTTPS_PORT, or give a certificate with `pilot certs set`.',
  },
  certificateUploadInvalid: {
    code: 'bad_request',
    message: (p: { problem: string }) => `certificate upload refused: ${p.problem}`,
    hint: 'Send JSON { "cert": "<PEM chain, leaf first>", "key": "<PEM private key>" } (`pilot certs set HOST --cert FILE --key FILE`).',
  },
  invalidHttpsPort: {
    code: 'bad_request',
    message: (p: { value: string }) => `PILOT_HTTPS_PORT=${JSON.stringify(p.value)} is not a port number`,
    hint: 'Set PILOT_HTTPS_PORT to a port 1-65535 (0: any free port), or unset it for HTTP only.',
  },
  notifyEndpointNotFound: {
    code: 'not_found',
    message: (p: { app: string; id: number }) => `app "${p.app}" has no notification endpoint #${p.id}`,
    hint: (p: { app: string }) => `List its endpoints with \`pilot notify ls ${p.app}\`.`,
  },
} as const satisfies ErrorEntries;
