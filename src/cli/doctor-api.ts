/**
 * `pilot doctor`'s checks through the REST API: the API answers, the token is accepted, agents are
 * connected, their clocks and the server's agree with this machine, registries accept their stored
 * credentials. Each needs the one before it; what cannot run is a skip that says why.
 */
import { join } from 'node:path';
import { isPilotError } from '../core/errors.js';
import { ApiClient } from '../api/client.js';
import type { NodeView, RegistryView } from '../api/wire.js';
import { adminToken, pilotHome, serverUrl, type GlobalOptions } from './context.js';

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

/** Check constructors. */
export const ok = (id: string, summary: string): Check => ({ id, status: 'ok', summary });
export const warn = (id: string, summary: string, fix: string): Check => ({ id, status: 'warn', summary, fix });
export const bad = (id: string, summary: string, fix: string): Check => ({ id, status: 'fail', summary, fix });
export const skip = (id: string, summary: string): Check => ({ id, status: 'skip', summary });

/** Why a request or a command failed, in a few words (ECONNREFUSED, timed out). */
export function reason(err: unknown): string {
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

export interface ApiFacts {
  readonly checks: Check[];
  readonly nodes?: NodeView[];
}

interface HealthProbe {
  readonly address: string;
  /** The HTTP status of /healthz; undefined when it did not answer (error says why). */
  readonly status?: number;
  readonly error?: string;
  /** The server's clock against ours (Date header), when it answered. */
  readonly skew?: number | undefined;
}

/** GET address/healthz within the timeout. */
async function probeHealth(address: string, timeoutMs: number): Promise<HealthProbe> {
  const sentAt = Date.now();
  try {
    const health = await fetch(`${address}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
    await health.arrayBuffer();
    return { address, status: health.status, skew: skewFromDate(health.headers.get('date'), sentAt, Date.now()) };
  } catch (err) {
    return { address, error: reason(err) };
  }
}

export async function apiChecks(opts: GlobalOptions, timeoutMs: number): Promise<ApiFacts> {
  const home = pilotHome();
  let server: string | undefined;
  try {
    server = serverUrl(opts, home);
  } catch (err) {
    // A bad --server / PILOT_SERVER list: the entry it names is the fix, not a bug to report.
    if (!isPilotError(err) || err.code !== 'invalid_argument') throw err;
    const needs = ['token', 'agents', 'clocks', 'registry'].map((id) => skip(id, 'needs the API'));
    return { checks: [bad('api', err.message, err.hint ?? 'Fix the list of server addresses.'), ...needs] };
  }
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
  // Several replicas (--server a,b,c): each is asked; the API works while one answers.
  const addresses = server.split(',');
  const probes = await Promise.all(addresses.map((a) => probeHealth(a, timeoutMs)));
  const answering = probes.filter((p): p is HealthProbe & { status: number } => p.status !== undefined);
  if (answering.length === 0) {
    return {
      checks: [
        bad(
          'api',
          addresses.length === 1
            ? `${server} does not answer (${probes[0]!.error})`
            : `no replica answers: ${probes.map((p) => `${p.address} (${p.error})`).join(', ')}`,
          'Start the server (`pilot up`, or `pilot server` on the control-plane machine), or point --server / PILOT_SERVER at the right address.',
        ),
        skip('token', 'needs the API'),
        skip('agents', 'needs the API'),
        skip('clocks', 'needs the API'),
        skip('registry', 'needs the API'),
      ],
    };
  }
  const serverSkew = answering[0]!.skew;
  const healthy = answering.filter((p) => p.status >= 200 && p.status < 300);
  if (addresses.length === 1) {
    const health = answering[0]!;
    if (health.status < 200 || health.status >= 300) {
      checks.push(
        bad('api', `${server}/healthz answered HTTP ${health.status}`, 'Is that address a Pilot server? Check --server / PILOT_SERVER.'),
      );
    } else checks.push(ok('api', `${server} answers`));
  } else {
    const others = probes.filter((p) => !healthy.includes(p as (typeof answering)[number]));
    const text = `${healthy.length} of ${addresses.length} replicas answer${
      others.length > 0
        ? `; ${others.map((p) => `${p.address} ${p.status !== undefined ? `answered HTTP ${p.status}` : `does not answer (${p.error})`}`).join(', ')}`
        : ''
    }`;
    if (healthy.length === 0) checks.push(bad('api', text, 'Are these addresses Pilot servers? Check --server / PILOT_SERVER.'));
    else if (others.length > 0)
      checks.push(warn('api', text, 'Start the replicas that are down, or take them out of --server / PILOT_SERVER.'));
    else checks.push(ok('api', text));
  }

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
