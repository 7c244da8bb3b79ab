/**
 * Versioned schema migrations. Append only: never edit a migration that has shipped; add the next.
 * `PRAGMA user_version` records how far a database has been migrated; each migration runs in its
 * own transaction together with the version bump, so a crash leaves the database at a version.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: foundation
  `
  CREATE TABLE apps (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    replicas INTEGER NOT NULL,
    active_revision INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE revisions (
    app TEXT NOT NULL REFERENCES apps(name),
    number INTEGER NOT NULL,
    artifact TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    dirty INTEGER NOT NULL,
    config TEXT NOT NULL,
    run_id INTEGER,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (app, number)
  );
  CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL REFERENCES apps(name),
    from_revision INTEGER,
    to_revision INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    started_at INTEGER NOT NULL,
    finished_at INTEGER
  );
  CREATE INDEX rollouts_app ON rollouts(app, id);
  CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL,
    api_url TEXT NOT NULL,
    credential_hash TEXT NOT NULL,
    agent_token TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
  );
  CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL REFERENCES apps(name),
    revision INTEGER NOT NULL,
    node_id TEXT NOT NULL REFERENCES nodes(id),
    desired TEXT NOT NULL,
    state TEXT NOT NULL,
    port INTEGER,
    pid INTEGER,
    restarts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    started_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX instances_app ON instances(app);
  CREATE INDEX instances_node ON instances(node_id);
  CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    trigger TEXT NOT NULL,
    commit_sha TEXT,
    dirty INTEGER NOT NULL,
    status TEXT NOT NULL,
    steps TEXT NOT NULL,
    artifact TEXT,
    revision INTEGER,
    error TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
  );
  CREATE INDEX runs_app ON runs(app, id);
  CREATE TABLE artifacts (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    app TEXT,
    commit_sha TEXT,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX artifacts_app ON artifacts(app);
  `,
  // 2: CD server: app sources and webhook secrets, durable webhook runs, secrets at rest
  `
  ALTER TABLE apps ADD COLUMN repo TEXT;
  ALTER TABLE apps ADD COLUMN branch TEXT;
  ALTER TABLE apps ADD COLUMN webhook_secret TEXT;
  ALTER TABLE apps ADD COLUMN github_token TEXT;
  ALTER TABLE apps ADD COLUMN status_api_url TEXT;
  ALTER TABLE runs ADD COLUMN delivery_id TEXT;
  ALTER TABLE runs ADD COLUMN branch TEXT;
  ALTER TABLE runs ADD COLUMN message TEXT;
  ALTER TABLE runs ADD COLUMN author TEXT;
  ALTER TABLE runs ADD COLUMN fence INTEGER;
  ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
  ALTER TABLE runs ADD COLUMN retry_of INTEGER;
  ALTER TABLE runs ADD COLUMN superseded_by INTEGER;
  ALTER TABLE runs ADD COLUMN rollout_id INTEGER;
  ALTER TABLE runs ADD COLUMN started_at INTEGER;
  ALTER TABLE runs ADD COLUMN repo_full_name TEXT;
  CREATE UNIQUE INDEX runs_delivery ON runs(delivery_id) WHERE delivery_id IS NOT NULL;
  CREATE INDEX runs_status ON runs(status, id);
  CREATE INDEX runs_app_commit ON runs(app, commit_sha);
  CREATE INDEX runs_app_fence ON runs(app, fence);
  CREATE INDEX runs_app_status ON runs(app, status, branch);
  CREATE TABLE secrets (
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (app, name)
  );
  `,
  // 3: fleet: node scheduling state and capacity, join tokens that can be revoked
  `
  ALTER TABLE nodes ADD COLUMN scheduling TEXT NOT NULL DEFAULT 'eligible';
  ALTER TABLE nodes ADD COLUMN cpus REAL;
  ALTER TABLE nodes ADD COLUMN memory_mb INTEGER;
  ALTER TABLE nodes ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
  CREATE INDEX nodes_credential ON nodes(credential_hash);
  CREATE TABLE join_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
  );
  `,
  // 4: runtimes: container images and pinned Node.js runtimes per revision, node capabilities,
  // the runtime cache index, registry credentials (password sealed like secrets)
  `
  ALTER TABLE revisions ADD COLUMN image TEXT;
  ALTER TABLE revisions ADD COLUMN node_runtime TEXT;
  ALTER TABLE nodes ADD COLUMN runtimes TEXT NOT NULL DEFAULT '{}';
  ALTER TABLE instances ADD COLUMN container_id TEXT;
  CREATE TABLE node_runtimes (
    version TEXT NOT NULL,
    platform TEXT NOT NULL,
    digest TEXT NOT NULL,
    integrity TEXT,
    size INTEGER NOT NULL,
    origin TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (version, platform)
  );
  CREATE TABLE registries (
    url TEXT PRIMARY KEY,
    username TEXT,
    password TEXT,
    updated_at INTEGER NOT NULL
  );
  `,
  // appwords: the last lines of a failing instance's output (masked), the address an instance is
  // reached on when it has its own network namespace (fixed port), and one-shot release instances
  `
  ALTER TABLE instances ADD COLUMN log_tail TEXT;
  ALTER TABLE instances ADD COLUMN address TEXT;
  ALTER TABLE instances ADD COLUMN kind TEXT NOT NULL DEFAULT 'web';
  `,
  // state: an app being removed (`pilot apps rm`): hidden from every listing, its instances
  // stopping; the row and its revisions go once the last instance is gone
  `
  ALTER TABLE apps ADD COLUMN removed_at INTEGER;
  `,
  // volumes: which node holds each app volume (pilot.yaml `volumes`); the scheduler places the
  // app's instances only there. A row is written at the first placement, removed by `pilot volumes forget`.
  `
  CREATE TABLE volume_placements (
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    node_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (app, name)
  );
  `,
  // pkgmgr: build-time secrets: visible to the build only, never to the running app
  `
  ALTER TABLE secrets ADD COLUMN scope TEXT NOT NULL DEFAULT 'run';
  `,
  // plans: who set apps.replicas last (config: pilot.yaml at a deploy; scale: `pilot scale`; autoscaler), core/replicas.ts
  `
  ALTER TABLE apps ADD COLUMN replicas_source TEXT NOT NULL DEFAULT 'config';
  `,
  // events: the event feed (core/events.ts), one row per state change, written in the change's own
  // transaction; event_trim remembers how far retention deleted (a resume before it gets a reset)
  `
  CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    app TEXT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
  );
  CREATE INDEX events_app_id ON events (app, id);
  CREATE INDEX events_time ON events (time);
  CREATE TABLE event_trim (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    through INTEGER NOT NULL
  );
  `,
  // strategy: a rollout's strategy (core/strategy.ts, JSON; null: blue-green) and where it is
  // (core/rollout-types.ts RolloutProgress): step, the new revision's weight, when the last
  // transition happened (wall clock), a person's command (promote, promote-full, abort), the last
  // analysis verdict (JSON)
  `
  ALTER TABLE rollouts ADD COLUMN strategy TEXT;
  ALTER TABLE rollouts ADD COLUMN step INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE rollouts ADD COLUMN weight INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE rollouts ADD COLUMN step_since INTEGER;
  ALTER TABLE rollouts ADD COLUMN command TEXT;
  ALTER TABLE rollouts ADD COLUMN verdict TEXT;
  `,
  // experiments: A/B experiments (core/experiment.ts): variant a (control: the active revision at
  // the start) against variant b at `split` % of the traffic, sticky by a cookie or a header; at
  // most one running per app (status 'running'); kept: which variant the end kept ('a' | 'b'),
  // NULL when a rollout or the app's removal ended it (reason says which)
  `
  CREATE TABLE experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    control_revision INTEGER NOT NULL,
    variant_revision INTEGER NOT NULL,
    split INTEGER NOT NULL,
    by_kind TEXT NOT NULL,
    by_name TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    kept TEXT,
    reason TEXT
  );
  CREATE INDEX experiments_app_id ON experiments (app, id);
  `,
  // certificates: HTTPS certificates by host (control/certificates.ts): source 'acme' | 'user', the
  // PEM chain and key sealed (store/secret-box.ts), state 'pending' | 'valid' | 'failed', the last
  // error and the back-off (attempts, next_attempt_at); acme_accounts: the sealed account key per
  // ACME directory URL
  `
  CREATE TABLE certificates (
    host TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    cert_sealed TEXT,
    key_sealed TEXT,
    issuer TEXT,
    not_after INTEGER,
    state TEXT NOT NULL,
    last_error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE acme_accounts (
    directory TEXT PRIMARY KEY,
    key_sealed TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  `,
  // notifications (control/notifications.ts): endpoints per app (URL and HMAC secret sealed,
  // store/secret-box.ts; the masked URL for display; the events it hears; after_event: feed events
  // up to it predate the endpoint), deliveries (the body as sent, byte for byte on every retry;
  // pending | delivered | failed; when to try again), each attempt (HTTP code or error, how long),
  // and notify_cursor: the last feed event turned into deliveries (one row)
  `
  CREATE TABLE notify_endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    kind TEXT NOT NULL,
    url_sealed TEXT NOT NULL,
    url_masked TEXT NOT NULL,
    secret_sealed TEXT,
    events TEXT NOT NULL,
    after_event INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX notify_endpoints_app ON notify_endpoints (app);
  CREATE TABLE notify_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id INTEGER NOT NULL,
    app TEXT NOT NULL,
    event TEXT NOT NULL,
    event_id INTEGER,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (endpoint_id, event_id)
  );
  CREATE INDEX notify_deliveries_due ON notify_deliveries (status, next_attempt_at);
  CREATE INDEX notify_deliveries_app ON notify_deliveries (app, id);
  CREATE TABLE notify_attempts (
    delivery_id INTEGER NOT NULL,
    n INTEGER NOT NULL,
    at INTEGER NOT NULL,
    code INTEGER,
    error TEXT,
    ms INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, n)
  );
  CREATE TABLE notify_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_event INTEGER NOT NULL
  );
  `,
  // deploy targets (Docker Swarm managers), `pilot targets add`
  `
  CREATE TABLE targets (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    docker TEXT NOT NULL,
    ports_from INTEGER NOT NULL,
    ports_to INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  );
  `,
];
