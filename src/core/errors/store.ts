import type { ErrorEntries } from './entry.js';

/** Errors raised in src/store/. */
export const storeErrors = {
  invalidSecretKey: {
    code: 'internal',
    message: (p: { keyFile: string }) => `${p.keyFile} is not a 32-byte key`,
    hint: 'Restore it from a backup; without it sealed secrets cannot be read.',
  },
  unknownSealedSecretFormat: {
    code: 'internal',
    message: 'unknown sealed-secret format',
  },
  sealedSecretCannotOpened: {
    code: 'internal',
    message: 'a sealed secret cannot be opened with this key (wrong secret.key, or the value was altered)',
  },
  databaseDamaged: {
    code: 'database_corrupt',
    message: (p: { file: string; message: string }) => `the state database ${p.file} is damaged: ${p.message}`,
    hint: 'Stop Pilot, then `pilot restore BACKUP-FILE` (a file made by `pilot backup`), or move pilot.db away and start with --fresh-database (apps keep running; the control plane forgets them).',
  },
  databaseUnopenable: {
    code: 'internal',
    message: (p: { file: string; message: string }) => `cannot open the state database ${p.file}: ${p.message}`,
  },
  databaseTooNew: {
    code: 'internal',
    message: (p: { current: number; migrationsCount: number }) =>
      `state database is at schema version ${p.current}, newer than this Pilot (${p.migrationsCount})`,
    hint: 'Upgrade Pilot, or point PILOT_HOME at another folder.',
  },
  appRemoving: {
    code: 'app_removing',
    message: (p: { name: string }) => `app "${p.name}" is being removed; its instances are still stopping`,
  },
  runNotFound: {
    code: 'run_not_found',
    message: (p: { id: number }) => `run ${p.id} not found`,
  },
  storeClosed: {
    code: 'internal',
    message: 'the memory store is closed',
  },
  instanceAlreadyExists: {
    code: 'conflict',
    message: (p: { id: string }) => `instance ${p.id} already exists`,
  },
  nodeIdNotFound: {
    code: 'node_not_found',
    message: (p: { nodeId: string }) => `node ${p.nodeId} not found`,
  },
  nodeNameTakenInStore: {
    code: 'conflict',
    message: (p: { name: string }) => `a node named "${p.name}" is already registered`,
  },
  joinTokenAlreadyExists: {
    code: 'conflict',
    message: (p: { id: string }) => `join token ${p.id} already exists`,
  },
  experimentAlreadyRunningInStore: {
    code: 'experiment_conflict',
    message: (p: { app: string; id: number }) => `app "${p.app}" already runs experiment #${p.id}`,
  },
  experimentNotRunning: {
    code: 'experiment_conflict',
    message: (p: { id: number }) => `experiment #${p.id} is not running`,
  },
  postgresUnreachable: {
    code: 'internal',
    message: (p: { url: string; message: string }) => `cannot use the PostgreSQL database ${p.url}: ${p.message}`,
    hint: 'Check that PostgreSQL runs and accepts connections there (pg_isready -h HOST -p PORT), and the user, password and database name in the URL.',
  },
  leaderFenced: {
    code: 'not_leader',
    message: (p: { token: number; current: number | undefined }) =>
      `write refused: leadership token ${p.token} is no longer current (${p.current === undefined ? 'no leader' : `the leader's token is ${p.current}`})`,
  },
  postgresTooNew: {
    code: 'internal',
    message: (p: { current: number; known: number }) =>
      `the PostgreSQL database is at schema version ${p.current}, newer than this Pilot (${p.known})`,
    hint: 'Upgrade Pilot: every control plane on one database must be the same version or newer.',
  },
  postgresBackupInvalid: {
    code: 'invalid_backup',
    message: (p: { file: string; message: string }) => `${p.file} is not a backup of the PostgreSQL store: ${p.message}`,
    hint: "Give a file written by the PostgreSQL store's backup (a JSON document of format pilot-postgres-backup).",
  },
  postgresTargetNotEmpty: {
    code: 'conflict',
    message: (p: { url: string; table: string }) =>
      `the PostgreSQL database ${p.url} already holds Pilot state (table ${p.table} has rows)`,
    hint: 'Restore or copy into a new, empty database (createdb NAME), or drop the one that is there if it is not needed.',
  },
  postgresCopyMismatch: {
    code: 'internal',
    message: (p: { table: string; detail: string }) =>
      `the copy of table ${p.table} into PostgreSQL does not match the source: ${p.detail}`,
    hint: 'Nothing was changed in the source. Drop the target database and copy again; if it happens again, report it with the table named.',
  },
  runChangedMeanwhile: {
    code: 'conflict',
    message: (p: { id: number; expected: string; actual: string }) =>
      `run ${p.id} changed meanwhile: it is ${p.actual}, no longer ${p.expected}`,
  },
} as const satisfies ErrorEntries;
