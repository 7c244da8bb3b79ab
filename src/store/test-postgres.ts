/**
 * Test support: a real PostgreSQL 15 (Debian's `postgresql`) started for one test file in a
 * temporary folder, on a free loopback port and a private socket folder, and stopped by its pid at
 * the end, even when the tests fail. As root it runs as the `postgres` user (PostgreSQL refuses
 * root). Each test gets a database of its own (`createDatabase`), dropped by the test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, closeSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';

const BIN = process.env.PILOT_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface PgCluster {
  readonly pid: number;
  readonly port: number;
  /** A new, empty database; its URL. */
  createDatabase(): Promise<string>;
  /** Drop a database made by createDatabase (its open connections are ended). */
  dropDatabase(url: string): Promise<void>;
  /** Stop the server (its data stays), as a database lost while in use. */
  down(): Promise<void>;
  /** Start it again on the same folder and port. */
  up(): Promise<void>;
  /** Stop the server (by pid) and remove its folder. */
  stop(): Promise<void>;
}

/** The user PostgreSQL runs as: ourselves, or `postgres` when we are root. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) return undefined;
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** Why PostgreSQL cannot run here, or undefined when it can. */
export function postgresUnavailable(): string | undefined {
  if (!existsSync(join(BIN, 'postgres')) || !existsSync(join(BIN, 'initdb')))
    return `postgres: no PostgreSQL 15 in ${BIN} (apt-get install -y postgresql)`;
  if (process.getuid?.() === 0 && runAs() === undefined)
    return 'postgres: running as root and there is no postgres user to run PostgreSQL as';
  return undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Start a server; throws with its log when it does not come up within a minute. */
export async function startPostgres(opts: { fsync?: boolean } = {}): Promise<PgCluster> {
  const user = runAs();
  const dir = mkdtempSync('/tmp/pilot-pg-');
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' };
  const init = spawnSync(join(BIN, 'initdb'), ['-D', data, '-U', 'pilot', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'], {
    ...user,
    env,
    cwd: dir,
    encoding: 'utf8',
  });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${init.stderr || init.stdout}`);
  }
  const port = await freePort();
  const logFile = join(dir, 'postgres.log');
  closeSync(openSync(logFile, 'a'));
  if (user) chownSync(logFile, user.uid, user.gid);
  // fsync off by default: a throw-away cluster; the store's durability is PostgreSQL's, not under test
  // here (benchmarks turn it on).
  const args = [
    '-D',
    data,
    '-p',
    String(port),
    '-k',
    dir,
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    `fsync=${opts.fsync === true ? 'on' : 'off'}`,
    '-c',
    'max_connections=300',
  ];
  const admin = `postgres://pilot@127.0.0.1:${port}/postgres`;
  let server: { pid: number; exited: boolean } | undefined;
  // If this process dies without its after() hook, the server must not outlive it.
  const onExit = (): void => {
    if (server && !server.exited) process.kill(server.pid, 'SIGQUIT');
  };
  process.once('exit', onExit);

  /** Stop the server by pid: fast shutdown (ends the sessions), SIGKILL after 20 s. */
  const halt = async (): Promise<void> => {
    const s = server;
    if (!s || s.exited) return;
    process.kill(s.pid, 'SIGINT');
    for (let i = 0; i < 200 && !s.exited; i++) await sleep(100);
    if (!s.exited) process.kill(s.pid, 'SIGKILL');
    for (let i = 0; i < 50 && !s.exited; i++) await sleep(100);
  };
  const stop = async (): Promise<void> => {
    await halt();
    process.removeListener('exit', onExit);
    rmSync(dir, { recursive: true, force: true });
  };
  /** Start the server and wait until it accepts connections. */
  const boot = async (): Promise<void> => {
    const log = openSync(logFile, 'a');
    const child: ChildProcess = spawn(join(BIN, 'postgres'), args, { ...user, env, cwd: dir, stdio: ['ignore', log, log] });
    closeSync(log);
    const s = { pid: child.pid!, exited: false };
    server = s;
    child.once('exit', () => (s.exited = true));
    const started = Date.now();
    for (;;) {
      const c = new pg.Client({ connectionString: admin });
      try {
        await c.connect();
        await c.end();
        return;
      } catch {
        await c.end().catch(() => undefined);
        if (s.exited || Date.now() - started > 60_000) {
          const text = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
          await stop();
          throw new Error(`PostgreSQL did not start: ${text.slice(-2000)}`);
        }
        await sleep(100);
      }
    }
  };
  await boot();
  let n = 0;
  const query = async (sql: string): Promise<void> => {
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  return {
    get pid() {
      return server!.pid;
    },
    port,
    down: halt,
    up: boot,
    async createDatabase() {
      const name = `pilot_t${process.pid}_${++n}`;
      await query(`CREATE DATABASE ${name}`);
      return `postgres://pilot@127.0.0.1:${port}/${name}`;
    },
    async dropDatabase(url) {
      const name = new URL(url).pathname.slice(1);
      if (!/^pilot_t\d+_\d+$/.test(name)) throw new Error(`not a test database: ${name}`);
      await query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
    stop,
  };
}
