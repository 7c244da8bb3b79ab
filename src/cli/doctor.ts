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
import { dirname } from 'node:path';
import { parseDuration } from '../core/duration.js';
import { fail } from '../core/errors.js';
import type { NodeView } from '../api/wire.js';
import { diskStatus } from '../disk/disk.js';
import { probeEngine } from '../docker/probe.js';
import { detectIsolation } from '../agent/isolation.js';
import { runCommand } from '../os/exec.js';
import { npmEnv } from '../node-runtime/npm-registry.js';
import { pilotHome, readServerFile, type GlobalOptions } from './context.js';
import { apiChecks, bad, ok, reason, skip, warn, type Check, type CheckStatus } from './doctor-api.js';
import { style } from './style.js';

export type { Check, CheckStatus } from './doctor-api.js';
export { skewFromDate } from './doctor-api.js';

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
    const r = await runCommand([bin, ...args], { cwd: scratchDir(), env, timeoutMs });
    if (r.code === 0) return { ok: true, line: r.tail[0] ?? '' };
    return { ok: false, why: `exit ${r.code ?? r.signal}: ${r.tail.slice(-1)[0] ?? ''}`.trim() };
  } catch (err) {
    const why = reason(err);
    return { ok: false, why: why === 'ENOENT' ? `${bin} not found on PATH` : why };
  }
}
/** Where the checked commands run: no app folder (its .npmrc), no $PILOT_HOME. */
function scratchDir(): string {
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
