/**
 * `pilot doctor`: checks the set-up from where the CLI runs and says how to fix what is wrong.
 *
 *   api ─► token ─► agents ─► clocks        (through the REST API; skipped when the API is away)
 *                      └────► registry
 *   docker, disk, isolation, haproxy, acme, npm   (this machine)
 *
 * A check passes (ok), warns (works, but something is off or unknown) or fails; one failure makes
 * the exit code 1. Checks of this machine run together, each bounded by --timeout.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseDuration } from '../core/duration.js';
import { fail, isPilotError } from '../core/errors.js';
import { ApiClient } from '../api/client.js';
import type { NodeView, RegistryView } from '../api/wire.js';
import { diskStatus } from '../disk/disk.js';
import { probeEngine } from '../docker/probe.js';
import { detectIsolation } from '../agent/isolation.js';
import { runCommand } from '../os/exec.js';
import { npmEnv } from '../node-runtime/npm-registry.js';
import { adminToken, pilotHome, readServerFile, serverUrl, type GlobalOptions } from './context.js';
import { style } from './style.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface Check {
  readonly id: string;
  readonly status: CheckStatus;
  /** What was found, one line. */
  readonly summary: string;
  /** How to fix it (warn and fail). */
  readonly fix?: string;
}

/** Clocks further apart than this make leases, token expiry and certificate checks misjudge time. */
const SKEW_WARN_MS = 2_000;
const SKEW_FAIL_MS = 30_000;

const ok = (id: string, summary: string): Check => ({ id, status: 'ok', summary });
const warn = (id: string, summary: string, fix: string): Check => ({ id, status: 'warn', summary, fix });
const bad = (id: string, summary: string, fix: string): Check => ({ id, status: 'fail', summary, fix });
const skip = (id: string, summary: string): Check => ({ id, status: 'skip', summary });

function reason(err: unknown): string {
  const e = err as { cause?: { code?: string; message?: string }; code?: string; name?: string; message?: string };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'timed out';
  return e?.cause?.code ?? e?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}

/** Milliseconds the clock behind an HTTP answer is ahead of ours (Date has 1 s resolution: ±1 s is noise). */
export function skewFromDate(dateHeader: string | null, sentAt: number, receivedAt: number): number | undefined {
  if (!dateHeader) return undefined;
  const theirs = Date.parse(dateHeader);
  if (!Number.isFinite(theirs)) return undefined;
  // Date is truncated to the second: its true value lies in [theirs, theirs + 1000).
  const mid = (sentAt + receivedAt) / 2;
  const ahead = theirs + 500 - mid;
  return Math.abs(ahead) <= 1500 ? 0 : Math.round(ahead);
}

function skewText(ms: number): string {
  const s = Math.round(Math.abs(ms) / 1000);
  return `${s}s ${ms > 0 ? 'ahead' : 'behind'}`;
}

interface ApiFacts {
  readonly checks: Check[];
  readonly nodes?: NodeView[];
}

async function apiChecks(opts: GlobalOptions, timeoutMs: number): Promise<ApiFacts> {
  const home = pilotHome();
  const server = serverUrl(opts, home);
  if (!server) {
    return {
      checks: [
        bad(
          'api',
          `no Pilot server known (none recorded in ${join(home, 'server.json')})`,
          'Start one here with `pilot up`, or name it with --server URL or PILOT_SERVER.',
        ),
        skip('token', 'needs the API'),
        skip('agents', 'needs the API'),
        skip('clocks', 'needs the API'),
        skip('registry', 'needs the API'),
      ],
    };
  }
  const checks: Check[] = [];
  const sentAt = Date.now();
  let health: Response;
  try {
    health = await fetch(`${server}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
    await health.arrayBuffer();
  } catch (err) {
    return {
      checks: [
        bad(
          'api',
          `${server} does not answer (${reason(err)})`,
          'Start the server (`pilot up`, or `pilot server` on the control-plane machine), or point --server / PILOT_SERVER at the right address.',
        ),
        skip('token', 'needs the API'),
        skip('agents', 'needs the API'),
        skip('clocks', 'needs the API'),
        skip('registry', 'needs the API'),
      ],
    };
  }
  const serverSkew = skewFromDate(health.headers.get('date'), sentAt, Date.now());
  if (!health.ok) {
    checks.push(
      bad('api', `${server}/healthz answered HTTP ${health.status}`, 'Is that address a Pilot server? Check --server / PILOT_SERVER.'),
    );
  } else checks.push(ok('api', `${server} answers`));

  const token = (() => {
    try {
      return adminToken(opts, home);
    } catch (err) {
      return err instanceof Error ? err : undefined;
    }
  })();
  if (token === undefined || token instanceof Error) {
    checks.push(
      bad(
        'token',
        token instanceof Error ? token.message : `no admin token (no PILOT_TOKEN, no --token-file, no ${join(home, 'admin-token')})`,
        'Set PILOT_TOKEN or pass --token-file FILE with the admin token `pilot up` printed on its first start ($PILOT_HOME/admin-token on the server).',
      ),
      skip('agents', 'needs a valid token'),
      skip('registry', 'needs a valid token'),
    );
    checks.push(clockCheck(serverSkew, []));
    return { checks };
  }
  const api = new ApiClient(server, token);
  let nodes: NodeView[];
  try {
    nodes = (await api.call<{ nodes: NodeView[] }>('GET', '/api/v1/nodes', undefined, { timeoutMs })).nodes;
    checks.push(ok('token', 'the server accepts the admin token'));
  } catch (err) {
    const refused = isPilotError(err) && (err.code === 'unauthorized' || err.code === 'forbidden');
    checks.push(
      refused
        ? bad(
            'token',
            `the server refuses the token (${err.message})`,
            'Use the admin token of this server: $PILOT_HOME/admin-token on its machine, through PILOT_TOKEN or --token-file.',
          )
        : bad('token', `the token could not be checked: ${(err as Error).message}`, 'Run `pilot doctor` again; see the server log.'),
      skip('agents', 'needs a valid token'),
      skip('registry', 'needs a valid token'),
    );
    checks.push(clockCheck(serverSkew, []));
    return { checks };
  }
  checks.push(agentsCheck(nodes));
  checks.push(clockCheck(serverSkew, await agentClocks(nodes, timeoutMs)));
  checks.push(await registryCheck(api, timeoutMs));
  return { checks, nodes };
}

function agentsCheck(nodes: NodeView[]): Check {
  if (nodes.length === 0) {
    return bad(
      'agents',
      'no agent has joined: nothing can run',
      '`pilot up` runs one on this machine; on another machine run `pilot agent --server URL` with PILOT_JOIN_TOKEN (`pilot token create --join`).',
    );
  }
  const notReady = nodes.filter((n) => n.status !== 'ready');
  const ready = nodes.length - notReady.length;
  if (ready === 0) {
    return bad(
      'agents',
      `no agent is connected: ${notReady.map((n) => `${n.name} ${n.status}`).join(', ')}`,
      'Start the agents again (`pilot agent …`), and check they reach the server (firewall, --server URL).',
    );
  }
  if (notReady.length > 0) {
    return warn(
      'agents',
      `${ready} of ${nodes.length} agents connected; ${notReady.map((n) => `${n.name} ${n.status}`).join(', ')}`,
      'Restart the agents that are away, or `pilot drain NODE` the ones that are gone for good.',
    );
  }
  return ok('agents', `${ready} agent(s) connected: ${nodes.map((n) => n.name).join(', ')}`);
}

/** Each reachable agent's clock, from the Date header of its API (any answer carries one). */
async function agentClocks(nodes: NodeView[], timeoutMs: number): Promise<{ node: string; skew?: number; error?: string }[]> {
  return Promise.all(
    nodes
      .filter((n) => n.status === 'ready' && n.apiUrl)
      .map(async (n) => {
        const sentAt = Date.now();
        try {
          const res = await fetch(n.apiUrl!, { method: 'HEAD', signal: AbortSignal.timeout(timeoutMs) });
          const skew = skewFromDate(res.headers.get('date'), sentAt, Date.now());
          return skew === undefined ? { node: n.name, error: 'no Date header' } : { node: n.name, skew };
        } catch (err) {
          return { node: n.name, error: `not reachable from here (${reason(err)})` };
        }
      }),
  );
}

function clockCheck(serverSkew: number | undefined, agents: { node: string; skew?: number; error?: string }[]): Check {
  const off = [
    ...(serverSkew === undefined ? [] : [{ who: 'server', skew: serverSkew }]),
    ...agents.flatMap((a) => (a.skew === undefined ? [] : [{ who: a.node, skew: a.skew }])),
  ].filter((c) => Math.abs(c.skew) > SKEW_WARN_MS);
  const unknown = agents.filter((a) => a.error);
  const fix = 'Keep clocks in sync with NTP (systemd-timesyncd, chrony) on every machine.';
  const measured = `${agents.length - unknown.length} agent clock(s)${serverSkew === undefined ? '' : ' and the server'}`;
  if (off.some((c) => Math.abs(c.skew) > SKEW_FAIL_MS))
    return bad('clocks', off.map((c) => `${c.who} ${skewText(c.skew)}`).join(', '), fix);
  if (off.length > 0) return warn('clocks', off.map((c) => `${c.who} ${skewText(c.skew)}`).join(', '), fix);
  if (unknown.length > 0) {
    return warn(
      'clocks',
      `${measured} within 2s of this machine; unknown: ${unknown.map((a) => `${a.node} ${a.error}`).join(', ')}`,
      'Run `pilot doctor` where the agents can be reached, to compare their clocks.',
    );
  }
  return ok('clocks', `${measured} within 2s of this machine`);
}

async function registryCheck(api: ApiClient, timeoutMs: number): Promise<Check> {
  let registries: RegistryView[];
  try {
    registries = (await api.call<{ registries: RegistryView[] }>('GET', '/api/v1/registries?credentials=1', undefined, { timeoutMs }))
      .registries;
  } catch (err) {
    return warn('registry', `the registries could not be read: ${(err as Error).message}`, 'Run `pilot registry show` for the error.');
  }
  if (registries.length === 0) return skip('registry', 'none set: images go to the artifact repository');
  const problems: string[] = [];
  for (const r of registries) {
    const headers: Record<string, string> = {};
    if (r.username !== null && r.password !== undefined) {
      headers.authorization = `Basic ${Buffer.from(`${r.username}:${r.password}`).toString('base64')}`;
    }
    try {
      const res = await fetch(`${r.url.replace(/\/+$/, '')}/v2/`, { headers, signal: AbortSignal.timeout(timeoutMs) });
      await res.arrayBuffer();
      if (res.status === 401)
        problems.push(`${r.url} refuses ${r.username === null ? 'anonymous access' : `the credentials of ${r.username}`}`);
      else if (res.status >= 400) problems.push(`${r.url}/v2/ answers HTTP ${res.status}`);
    } catch (err) {
      problems.push(`${r.url} does not answer from here (${reason(err)})`);
    }
  }
  if (problems.length > 0) {
    return bad(
      'registry',
      problems.join('; '),
      'Set working credentials with `pilot registry set URL --username USER --password-stdin`, or check the address.',
    );
  }
  return ok('registry', `${registries.map((r) => r.url).join(', ')}: credentials accepted`);
}

async function dockerCheck(nodes: NodeView[] | undefined, timeoutMs: number): Promise<Check> {
  const local = await probeEngine(undefined, timeoutMs);
  const remote = (nodes ?? []).filter((n) => n.runtimes?.docker?.available === false).map((n) => n.name);
  const fix =
    'Start the Docker engine (`systemctl start docker`, or dockerd) or point DOCKER_HOST at it; only apps with `runtime: docker` need it.';
  if (!local.available) return warn('docker', `no engine here (${local.error ?? 'not answering'})`, fix);
  if (remote.length > 0) return warn('docker', `engine ${local.version ?? ''} here; none on ${remote.join(', ')}`, fix);
  return ok('docker', `engine ${local.version ?? '(version unknown)'} answers`);
}

async function diskCheck(): Promise<Check> {
  const home = pilotHome();
  // Before the first `pilot up` $PILOT_HOME does not exist yet: the disk it will be on is its nearest existing parent's.
  let at = home;
  while (!existsSync(at) && dirname(at) !== at) at = dirname(at);
  const d = await diskStatus(at);
  if (!d)
    return warn(
      'disk',
      `cannot read the free space under ${home}`,
      'Create $PILOT_HOME (PILOT_HOME, default ./.pilot) or fix its permissions.',
    );
  const free = `${(d.freeBytes / 2 ** 30).toFixed(1)} GiB free under ${home}${at === home ? '' : ` (not created yet; on the disk of ${at})`}`;
  return d.low
    ? bad(
        'disk',
        `${free}, below the ${(d.lowBelowBytes / 2 ** 30).toFixed(1)} GiB Pilot needs`,
        'Free space: `pilot gc`, old logs, or move PILOT_HOME to a bigger disk.',
      )
    : ok('disk', free);
}

function isolationCheck(nodes: NodeView[] | undefined): Check {
  const here = detectIsolation();
  const remote = (nodes ?? []).flatMap((n) => {
    const i = n.runtimes?.process?.isolation;
    return i?.reason ? [`${n.name}: ${i.reason}`] : [];
  });
  const own = [here.user ? 'uid switching' : '', here.cgroups.kind === 'none' ? '' : `cgroups ${here.cgroups.kind}`]
    .filter(Boolean)
    .join(', ');
  const fix = 'Run the agent as root on a machine with cgroups v2 (memory, cpu, pids controllers delegated), or use `runtime: docker`.';
  if (here.report.reason) return warn('isolation', `here: ${here.report.reason}${remote.length > 0 ? `; ${remote.join('; ')}` : ''}`, fix);
  if (remote.length > 0) return warn('isolation', `here: ${own}; ${remote.join('; ')}`, fix);
  return ok('isolation', `here: ${own}`);
}

/** `bin` runs with `args` and exits 0 within the timeout: its first output line, else why not. */
async function runs(
  bin: string,
  args: string[],
  timeoutMs: number,
  env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/' },
): Promise<{ ok: true; line: string } | { ok: false; why: string }> {
  try {
    const r = await runCommand([bin, ...args], { cwd: pilotHomeOrTmp(), env, timeoutMs });
    if (r.code === 0) return { ok: true, line: r.tail[0] ?? '' };
    return { ok: false, why: `exit ${r.code ?? r.signal}: ${r.tail.slice(-1)[0] ?? ''}`.trim() };
  } catch (err) {
    const why = reason(err);
    return { ok: false, why: why === 'ENOENT' ? `${bin} not found on PATH` : why };
  }
}
function pilotHomeOrTmp(): string {
  return process.env.TMPDIR ?? '/tmp';
}

async function haproxyCheck(timeoutMs: number): Promise<Check> {
  const server = readServerFile();
  if (server?.routerKind !== 'haproxy') return skip('haproxy', 'not configured (the embedded router serves the traffic)');
  const bin = process.env.PILOT_HAPROXY_BIN ?? '/usr/sbin/haproxy';
  const r = await runs(bin, ['-v'], timeoutMs);
  if (!r.ok)
    return bad(
      'haproxy',
      `\`pilot up --router haproxy\` is configured, but ${bin} does not run (${r.why})`,
      'Install HAProxy 2.6+ (`apt-get install haproxy`) or set PILOT_HAPROXY_BIN.',
    );
  return ok('haproxy', r.line);
}

async function acmeCheck(timeoutMs: number): Promise<Check> {
  const directory = readServerFile()?.acmeDirectory ?? process.env.PILOT_ACME_DIRECTORY;
  if (!directory) return skip('acme', 'not configured (no PILOT_ACME_DIRECTORY)');
  try {
    const caFile = process.env.PILOT_ACME_CA_FILE;
    const signal = AbortSignal.timeout(timeoutMs);
    let res: { ok: boolean; status: number; json(): Promise<unknown> };
    if (caFile) {
      // A private CA (pebble, a company CA): undici's fetch with that CA, as the ACME client trusts it.
      const [undici, { readFileSync }] = await Promise.all([import('undici'), import('node:fs')]);
      const dispatcher = new undici.Agent({ connect: { ca: readFileSync(caFile, 'utf8') } });
      res = await undici.fetch(directory, { dispatcher, signal });
    } else res = await fetch(directory, { signal });
    const body = (await res.json().catch(() => undefined)) as { newNonce?: unknown } | undefined;
    if (!res.ok || typeof body?.newNonce !== 'string') {
      return bad(
        'acme',
        `${directory} is not an ACME directory (HTTP ${res.status})`,
        'Check PILOT_ACME_DIRECTORY (e.g. https://acme-v02.api.letsencrypt.org/directory).',
      );
    }
    return ok('acme', `${directory} answers`);
  } catch (err) {
    return bad(
      'acme',
      `${directory} does not answer (${reason(err)})`,
      'Check PILOT_ACME_DIRECTORY, the network to the CA, and PILOT_ACME_CA_FILE for a private CA.',
    );
  }
}

async function npmCheck(timeoutMs: number): Promise<Check> {
  const fix =
    'Runtime pinning downloads Node.js through npm: install npm, set `registry` in ~/.npmrc to a reachable mirror, or import runtimes offline with `pilot runtimes add VERSION --from FILE`.';
  // npm as the builds run it: the user's npmrc, proxies and CA apply; no PILOT_* variable reaches it.
  const env = npmEnv();
  env.PATH = process.env.PATH ?? '';
  const version = await runs('npm', ['--version'], timeoutMs, env);
  if (!version.ok) return bad('npm', `npm does not run (${version.why})`, fix);
  const ping = await runs('npm', ['ping', '--no-update-notifier'], Math.max(timeoutMs, 10_000), env);
  if (!ping.ok) return bad('npm', `npm ${version.line} cannot reach its registry (${ping.why})`, fix);
  const registry = await runs('npm', ['config', 'get', 'registry'], timeoutMs, env);
  return ok('npm', `npm ${version.line} reaches ${registry.ok ? registry.line : 'its registry'}`);
}

/** A check that throws (a bug, an odd machine) is a failed check, never a crashed doctor. */
async function guarded(id: string, fn: () => Check | Promise<Check>): Promise<Check> {
  try {
    return await fn();
  } catch (err) {
    return bad(id, `the check itself failed: ${(err as Error)?.message ?? String(err)}`, 'Report it, with `pilot doctor --json` output.');
  }
}

/** Every check, in the order they are printed. */
export async function runChecks(opts: GlobalOptions, timeoutMs: number): Promise<Check[]> {
  const [api, disk, haproxy, acme, npm] = await Promise.all([
    apiChecks(opts, timeoutMs).catch((err: unknown) => ({
      checks: [
        bad('api', `the check itself failed: ${(err as Error)?.message ?? String(err)}`, 'Report it, with `pilot doctor --json` output.'),
      ],
      nodes: undefined,
    })),
    guarded('disk', diskCheck),
    guarded('haproxy', () => haproxyCheck(timeoutMs)),
    guarded('acme', () => acmeCheck(timeoutMs)),
    guarded('npm', () => npmCheck(timeoutMs)),
  ]);
  const docker = await guarded('docker', () => dockerCheck(api.nodes, timeoutMs));
  return [...api.checks, docker, disk, await guarded('isolation', () => isolationCheck(api.nodes)), haproxy, acme, npm];
}

export async function doctor(opts: GlobalOptions & { timeout?: string }): Promise<void> {
  const timeoutMs = parseDuration(opts.timeout ?? '5s');
  if (timeoutMs === undefined || timeoutMs <= 0) throw fail.invalidDoctorTimeout({ value: String(opts.timeout) });
  const checks = await runChecks(opts, timeoutMs);
  const failed = checks.filter((c) => c.status === 'fail').length;
  const warned = checks.filter((c) => c.status === 'warn').length;
  if (failed > 0) process.exitCode = 1;
  if (opts.json) {
    process.stdout.write(JSON.stringify({ ok: failed === 0, checks }, null, 2) + '\n');
    return;
  }
  const s = style();
  const mark: Record<CheckStatus, string> = { ok: s.green('ok  '), warn: s.yellow('warn'), fail: s.red('FAIL'), skip: s.dim('skip') };
  const width = Math.max(...checks.map((c) => c.id.length));
  const lines = checks.flatMap((c) => [
    `${mark[c.status]}  ${c.id.padEnd(width)}  ${c.summary}`,
    ...(c.fix ? [`${' '.repeat(width + 8)}${s.dim('fix:')} ${c.fix}`] : []),
  ]);
  const passed = checks.filter((c) => c.status === 'ok').length;
  lines.push('', `${passed} passed, ${warned} warning(s), ${failed} failed${failed > 0 ? '' : ': all checks passed'}`);
  process.stdout.write(lines.join('\n') + '\n');
}
