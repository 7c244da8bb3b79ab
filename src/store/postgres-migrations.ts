/**
 * Versioned schema migrations of the PostgreSQL store (postgres-store.ts). Append only, like the
 * SQLite ones (migrations.ts): never edit one that has shipped; add the next. `pilot_schema.version`
 * records how far a database is migrated; each migration runs in one transaction with its version
 * bump, under an advisory lock, so replicas starting together migrate once.
 *
 * Migration 1 is the SQLite schema as of its migration 14 ("notifications"), in PostgreSQL's
 * types: integers and wall-clock ms BIGINT, REAL as DOUBLE PRECISION, text in the "C" collation
 * (byte order, as SQLite compares) so every ORDER BY gives the same order on both stores.
 * Generated ids come from `pilot_next_id(table)`, a counter row per table in `pilot_ids`, not from
 * sequences: like SQLite's AUTOINCREMENT (sqlite_sequence) it is transactional, so a refused or
 * rolled-back insert uses up no id, and an id is never given twice, also after its row is deleted.
 * `registries.ord` stands in for SQLite's rowid (the tie-break of listRegistries). A
 * migration appended to migrations.ts needs its PostgreSQL twin appended here.
 */
export const PG_MIGRATIONS: readonly string[] = [
  // 1: everything up to SQLite's migration 14
  `
  CREATE TABLE pilot_ids (
    name TEXT COLLATE "C" PRIMARY KEY,
    last BIGINT NOT NULL
  );
  CREATE FUNCTION pilot_next_id(t TEXT) RETURNS BIGINT LANGUAGE sql VOLATILE AS $$
    INSERT INTO pilot_ids (name, last) VALUES (t, 1) ON CONFLICT (name) DO UPDATE SET last = pilot_ids.last + 1 RETURNING last
  $$;

  CREATE TABLE apps (
    name TEXT COLLATE "C" PRIMARY KEY,
    config TEXT COLLATE "C" NOT NULL,
    replicas BIGINT NOT NULL,
    active_revision BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
  );
  CREATE TABLE revisions (
    app TEXT COLLATE "C" NOT NULL REFERENCES apps(name),
    number BIGINT NOT NULL,
    artifact TEXT COLLATE "C" NOT NULL,
    commit_sha TEXT COLLATE "C" NOT NULL,
    dirty BIGINT NOT NULL,
    config TEXT COLLATE "C" NOT NULL,
    run_id BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app, number)
  );
  CREATE TABLE rollouts (
    id BIGINT PRIMARY KEY DEFAULT pilot_next_id('rollouts'),
    app TEXT COLLATE "C" NOT NULL REFERENCES apps(name),
    from_revision BIGINT,
    to_revision BIGINT NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C",
    started_at BIGINT NOT NULL,
    finished_at BIGINT
  );
  CREATE INDEX rollouts_app ON rollouts(app, id);
  CREATE TABLE nodes (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    address TEXT COLLATE "C" NOT NULL,
    api_url TEXT COLLATE "C" NOT NULL,
    credential_hash TEXT COLLATE "C" NOT NULL,
    agent_token TEXT COLLATE "C" NOT NULL,
    registered_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
  );
  CREATE TABLE instances (
    id TEXT COLLATE "C" PRIMARY KEY,
    app TEXT COLLATE "C" NOT NULL REFERENCES apps(name),
    revision BIGINT NOT NULL,
    node_id TEXT COLLATE "C" NOT NULL REFERENCES nodes(id),
    desired TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    port BIGINT,
    pid BIGINT,
    restarts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT COLLATE "C",
    started_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
  );
  CREATE INDEX instances_app ON instances(app);
  CREATE INDEX instances_node ON instances(node_id);
  CREATE TABLE runs (
    id BIGINT PRIMARY KEY DEFAULT pilot_next_id('runs'),
    app TEXT COLLATE "C" NOT NULL,
    trigger TEXT COLLATE "C" NOT NULL,
    commit_sha TEXT COLLATE "C",
    dirty BIGINT NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    steps TEXT COLLATE "C" NOT NULL,
    artifact TEXT COLLATE "C",
    revision BIGINT,
    error TEXT COLLATE "C",
    created_at BIGINT NOT NULL,
    finished_at BIGINT
  );
  CREATE INDEX runs_app ON runs(app, id);
  CREATE TABLE artifacts (
    digest TEXT COLLATE "C" PRIMARY KEY,
    size BIGINT NOT NULL,
    app TEXT COLLATE "C",
    commit_sha TEXT COLLATE "C",
    created_at BIGINT NOT NULL
  );
  CREATE INDEX artifacts_app ON artifacts(app);
  ALTER TABLE apps ADD COLUMN repo TEXT COLLATE "C";
  ALTER TABLE apps ADD COLUMN branch TEXT COLLATE "C";
  ALTER TABLE apps ADD COLUMN webhook_secret TEXT COLLATE "C";
  ALTER TABLE apps ADD COLUMN github_token TEXT COLLATE "C";
  ALTER TABLE apps ADD COLUMN status_api_url TEXT COLLATE "C";
  ALTER TABLE runs ADD COLUMN delivery_id TEXT COLLATE "C";
  ALTER TABLE runs ADD COLUMN branch TEXT COLLATE "C";
  ALTER TABLE runs ADD COLUMN message TEXT COLLATE "C";
  ALTER TABLE runs ADD COLUMN author TEXT COLLATE "C";
  ALTER TABLE runs ADD COLUMN fence BIGINT;
  ALTER TABLE runs ADD COLUMN attempt BIGINT NOT NULL DEFAULT 1;
  ALTER TABLE runs ADD COLUMN retry_of BIGINT;
  ALTER TABLE runs ADD COLUMN superseded_by BIGINT;
  ALTER TABLE runs ADD COLUMN rollout_id BIGINT;
  ALTER TABLE runs ADD COLUMN started_at BIGINT;
  ALTER TABLE runs ADD COLUMN repo_full_name TEXT COLLATE "C";
  CREATE UNIQUE INDEX runs_delivery ON runs(delivery_id) WHERE delivery_id IS NOT NULL;
  CREATE INDEX runs_status ON runs(status, id);
  CREATE INDEX runs_app_commit ON runs(app, commit_sha);
  CREATE INDEX runs_app_fence ON runs(app, fence);
  CREATE INDEX runs_app_status ON runs(app, status, branch);
  CREATE TABLE secrets (
    app TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, name)
  );
  ALTER TABLE nodes ADD COLUMN scheduling TEXT COLLATE "C" NOT NULL DEFAULT 'eligible';
  ALTER TABLE nodes ADD COLUMN cpus DOUBLE PRECISION;
  ALTER TABLE nodes ADD COLUMN memory_mb BIGINT;
  ALTER TABLE nodes ADD COLUMN labels TEXT COLLATE "C" NOT NULL DEFAULT '{}';
  CREATE INDEX nodes_credential ON nodes(credential_hash);
  CREATE TABLE join_tokens (
    id TEXT COLLATE "C" PRIMARY KEY,
    hash TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
  );
  ALTER TABLE revisions ADD COLUMN image TEXT COLLATE "C";
  ALTER TABLE revisions ADD COLUMN node_runtime TEXT COLLATE "C";
  ALTER TABLE nodes ADD COLUMN runtimes TEXT COLLATE "C" NOT NULL DEFAULT '{}';
  ALTER TABLE instances ADD COLUMN container_id TEXT COLLATE "C";
  CREATE TABLE node_runtimes (
    version TEXT COLLATE "C" NOT NULL,
    platform TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    integrity TEXT COLLATE "C",
    size BIGINT NOT NULL,
    origin TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (version, platform)
  );
  CREATE TABLE registries (
    url TEXT COLLATE "C" PRIMARY KEY,
    username TEXT COLLATE "C",
    password TEXT COLLATE "C",
    updated_at BIGINT NOT NULL
  );
  ALTER TABLE instances ADD COLUMN log_tail TEXT COLLATE "C";
  ALTER TABLE instances ADD COLUMN address TEXT COLLATE "C";
  ALTER TABLE instances ADD COLUMN kind TEXT COLLATE "C" NOT NULL DEFAULT 'web';
  ALTER TABLE apps ADD COLUMN removed_at BIGINT;
  CREATE TABLE volume_placements (
    app TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    node_id TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app, name)
  );
  ALTER TABLE secrets ADD COLUMN scope TEXT COLLATE "C" NOT NULL DEFAULT 'run';
  ALTER TABLE apps ADD COLUMN replicas_source TEXT COLLATE "C" NOT NULL DEFAULT 'config';
  CREATE TABLE events (
    id BIGINT PRIMARY KEY DEFAULT pilot_next_id('events'),
    time BIGINT NOT NULL,
    app TEXT COLLATE "C",
    kind TEXT COLLATE "C" NOT NULL,
    payload TEXT COLLATE "C" NOT NULL
  );
  CREATE INDEX events_app_id ON events (app, id);
  CREATE INDEX events_time ON events (time);
  CREATE TABLE event_trim (
    one BIGINT PRIMARY KEY CHECK (one = 1),
    through BIGINT NOT NULL
  );
  ALTER TABLE rollouts ADD COLUMN strategy TEXT COLLATE "C";
  ALTER TABLE rollouts ADD COLUMN step BIGINT NOT NULL DEFAULT 0;
  ALTER TABLE rollouts ADD COLUMN weight BIGINT NOT NULL DEFAULT 0;
  ALTER TABLE rollouts ADD COLUMN step_since BIGINT;
  ALTER TABLE rollouts ADD COLUMN command TEXT COLLATE "C";
  ALTER TABLE rollouts ADD COLUMN verdict TEXT COLLATE "C";
  CREATE TABLE experiments (
    id BIGINT PRIMARY KEY DEFAULT pilot_next_id('experiments'),
    app TEXT COLLATE "C" NOT NULL,
    control_revision BIGINT NOT NULL,
    variant_revision BIGINT NOT NULL,
    split BIGINT NOT NULL,
    by_kind TEXT COLLATE "C" NOT NULL,
    by_name TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    kept TEXT COLLATE "C",
    reason TEXT COLLATE "C"
  );
  CREATE INDEX experiments_app_id ON experiments (app, id);
  CREATE TABLE certificates (
    host TEXT COLLATE "C" PRIMARY KEY,
    source TEXT COLLATE "C" NOT NULL,
    cert_sealed TEXT COLLATE "C",
    key_sealed TEXT COLLATE "C",
    issuer TEXT COLLATE "C",
    not_after BIGINT,
    state TEXT COLLATE "C" NOT NULL,
    last_error TEXT COLLATE "C",
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    updated_at BIGINT NOT NULL
  );
  CREATE TABLE acme_accounts (
    directory TEXT COLLATE "C" PRIMARY KEY,
    key_sealed TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL
  );
  CREATE TABLE notify_endpoints (
    id BIGINT PRIMARY KEY DEFAULT pilot_next_id('notify_endpoints'),
    app TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    url_sealed TEXT COLLATE "C" NOT NULL,
    url_masked TEXT COLLATE "C" NOT NULL,
    secret_sealed TEXT COLLATE "C",
    events TEXT COLLATE "C" NOT NULL,
    after_event BIGINT NOT NULL,
    created_at BIGINT NOT NULL
  );
  CREATE INDEX notify_endpoints_app ON notify_endpoints (app);
  CREATE TABLE notify_deliveries (
    id BIGINT PRIMARY KEY DEFAULT pilot_next_id('notify_deliveries'),
    endpoint_id BIGINT NOT NULL,
    app TEXT COLLATE "C" NOT NULL,
    event TEXT COLLATE "C" NOT NULL,
    event_id BIGINT,
    body TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (endpoint_id, event_id)
  );
  CREATE INDEX notify_deliveries_due ON notify_deliveries (status, next_attempt_at);
  CREATE INDEX notify_deliveries_app ON notify_deliveries (app, id);
  CREATE TABLE notify_attempts (
    delivery_id BIGINT NOT NULL,
    n BIGINT NOT NULL,
    at BIGINT NOT NULL,
    code BIGINT,
    error TEXT COLLATE "C",
    ms BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, n)
  );
  CREATE TABLE notify_cursor (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    last_event BIGINT NOT NULL
  );
  ALTER TABLE registries ADD COLUMN ord BIGINT NOT NULL DEFAULT pilot_next_id('registries');
  `,
  // The leader lease (issue #16 part 2) with its fencing token, and the replicas' heartbeats
  // (postgres-lease.ts). Times are the database's clock: replicas never compare their own clocks.
  `
  CREATE TABLE pilot_leader (
    name TEXT COLLATE "C" PRIMARY KEY,
    holder TEXT COLLATE "C" NOT NULL,
    url TEXT COLLATE "C" NOT NULL,
    token BIGINT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
  );
  CREATE TABLE pilot_replicas (
    id TEXT COLLATE "C" PRIMARY KEY,
    url TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL
  );
  CREATE TABLE pilot_replica_secrets (
    name TEXT COLLATE "C" PRIMARY KEY,
    fingerprint TEXT COLLATE "C" NOT NULL
  );
  `,
  // deploy targets (Docker Swarm managers), `pilot targets add`
  `
  CREATE TABLE targets (
    name TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT COLLATE "C" NOT NULL,
    docker TEXT COLLATE "C" NOT NULL,
    ports_from BIGINT NOT NULL,
    ports_to BIGINT NOT NULL,
    created_at BIGINT NOT NULL
  );
  `,
];
