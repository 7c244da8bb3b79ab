/** `pilot apps`, `pilot status APP`, `pilot rollback APP`, `pilot scale APP N`. */
import type { TargetView } from '../api/wire.js';
import { swarmTasksTable } from './targets.js';
import type { ExperimentView } from '../control/experiments.js';
import { formatStickyBy } from '../core/experiment.js';
import { fail } from '../core/errors.js';
import { readSecretFile, secretFrom, warnSecretOnArgv, withFlagNames } from './secret-input.js';
import { followRollout } from '../pipeline/follow-rollout.js';
import { dockerInstanceTable } from './images.js';
import { ago, apiClient, output, routerPort, table, withPort, type GlobalOptions } from './context.js';
import { followEvents } from '../api/sse.js';
import { describeEvent } from './events.js';
import { style } from './style.js';
import { progress } from './progress.js';

/** `2/3`: green when all are ready, yellow when some, red when none (colours on a terminal only). */
function readyCell(ready: number, replicas: number, extra: string): string {
  const s = style();
  const text = `${ready}/${replicas}${extra}`;
  return ready >= replicas && replicas > 0 ? s.green(text) : ready > 0 ? s.yellow(text) : replicas === 0 ? text : s.red(text);
}

/** An instance state, coloured by what it means for traffic. */
function stateCell(state: string): string {
  const s = style();
  if (state === 'ready') return s.green(state);
  if (state === 'failed' || state === 'unhealthy' || state === 'backoff') return s.red(state);
  if (state === 'stopped') return s.dim(state);
  return s.yellow(state);
}
import { volumeLines, type VolumeRow } from './volumes.js';
import { planLines } from './plan-view.js';

interface AppRow {
  name: string;
  activeRevision: number | null;
  replicas: number;
  /** Bounds of an autoscaled app (null: the count is set by hand). */
  autoscale?: { min: number; max: number } | null;
  ready: number;
  url: string;
  updatedAt: number;
}

export async function apps(opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ apps: AppRow[] }>('GET', '/api/v1/apps');
  // The API says http://<app>.localhost; the router of this machine's `pilot up` listens on its own port.
  const port = routerPort(opts);
  for (const a of res.apps) a.url = withPort(a.url, port);
  output(opts, res, () =>
    res.apps.length === 0
      ? 'no apps yet: deploy one with `pilot run DIR`'
      : table(
          ['APP', 'REVISION', 'READY', 'UPDATED', 'URL'],
          res.apps.map((a) => [
            a.name,
            a.activeRevision,
            readyCell(a.ready, a.replicas, a.autoscale ? ` (auto ${a.autoscale.min}-${a.autoscale.max})` : ''),
            ago(a.updatedAt),
            a.url,
          ]),
        ),
  );
}

interface StatusRes {
  app: { name: string; activeRevision: number | null; replicas: number; hosts: string[]; autoscale?: AutoscaleView | null };
  revisions: {
    number: number;
    commit: string;
    artifact: string;
    dirty: boolean;
    createdAt: number;
    active: boolean;
    runtime?: string;
    image?: { id: string; ref?: string } | null;
    node?: { version: string; source: string } | null;
  }[];
  rollouts: { id: number; toRevision: number; fromRevision?: number; status: string; reason?: string; startedAt: number }[];
  rollout?: RolloutViewRes | null;
  routing?: { problems: string[] };
  orphans?: { id: string; node: string; revision?: number; state: string; port?: number; pid?: number }[];
  instances: {
    id: string;
    revision: number;
    node: string;
    address?: string;
    port?: number;
    pid?: number;
    containerId?: string;
    state: string;
    desired: string;
    restarts: number;
    lastError?: string;
  }[];
  volumes?: VolumeRow[];
  pending?: { count: number; reason: string } | null;
  experiment?: ExperimentView | null;
}

/** The autoscale part of an app's status (control/autoscaler.ts AutoscaleStatus). */
interface AutoscaleView {
  min: number;
  max: number;
  target: { metric: 'rps' | 'cpu'; value: number };
  scaleDownWindowSeconds: number;
  scaleUpWindowSeconds: number;
  current: { load: number | null; perInstance: number | null; measured: number } | null;
  lastDecision: { at: number; replicas: number; recommendation: number; limitedBy: string; reason: string } | null;
  lastChange: { at: number; from: number; to: number; reason: string } | null;
}

/** `autoscale: 2-10 replicas at 50 req/s per instance (down after 5m) · now 180 req/s (90 per instance)` and the last decision. */
export function autoscaleLines(v: AutoscaleView): string[] {
  const unit = v.target.metric === 'rps' ? 'req/s' : '% CPU';
  const now =
    v.current?.load === null || v.current === null
      ? 'no figures yet'
      : `now ${v.current.load} ${unit} (${v.current.perInstance ?? '-'} per instance)`;
  return [
    `autoscale: ${v.min}-${v.max} replicas at ${v.target.value} ${unit} per instance (scale down after ${v.scaleDownWindowSeconds}s); ${now}`,
    ...(v.lastDecision ? [`  last decision ${ago(v.lastDecision.at)}: ${v.lastDecision.reason}`] : []),
    ...(v.lastChange ? [`  last change ${ago(v.lastChange.at)}: ${v.lastChange.from} → ${v.lastChange.to}`] : []),
  ];
}

interface StatusView {
  res: StatusRes;
  traffic: TrafficRes | undefined;
  warnings: string[];
  /** A Swarm app: its tasks per slot (cli/targets.ts). */
  swarm?: string[];
}

/** An app's status from the API: the app, the control plane's warnings, a running rollout's live figures. */
async function loadStatus(api: ReturnType<typeof apiClient>, app: string): Promise<StatusView> {
  const res = await api.call<StatusRes>('GET', `/api/v1/apps/${encodeURIComponent(app)}`);
  const health = await api.call<Health>('GET', '/healthz').catch(() => undefined);
  // A running rollout shows each revision's live figures (the router's, over the last 30 s).
  const traffic = res.rollout
    ? await api.call<TrafficRes>('GET', `/api/v1/apps/${encodeURIComponent(app)}/traffic?window=30s`).catch(() => undefined)
    : undefined;
  // An app on a deploy target (Swarm): the tasks behind its instances, old and new.
  const targets = await api.call<{ targets: TargetView[] }>('GET', '/api/v1/targets').catch(() => undefined);
  const swarm = (targets?.targets ?? []).flatMap((t) => swarmTasksTable(t, app));
  return { res, traffic, warnings: healthWarnings(health), ...(swarm.length > 0 ? { swarm } : {}) };
}

export async function status(app: string, opts: GlobalOptions & { watch?: boolean }): Promise<void> {
  const api = apiClient(opts);
  const first = await loadStatus(api, app);
  if (opts.watch) return watchStatus(api, app, first, opts);
  if (!opts.json) for (const w of first.warnings) process.stderr.write(`warning: ${w}\n`);
  output(opts, first.res, () => renderStatus(first, routerPort(opts)));
}

/**
 * `pilot status APP --watch`: the status again after every event of the app on the event stream
 * (GET /api/v1/events as SSE; no polling), events close together drawn once. On a terminal the
 * screen is redrawn in place; otherwise (and with --json, one document a line) each refresh is
 * appended under a time stamp. Ends on Ctrl-C.
 */
async function watchStatus(api: ReturnType<typeof apiClient>, app: string, first: StatusView, opts: GlobalOptions): Promise<void> {
  const tty = process.stdout.isTTY === true && !opts.json;
  const port = routerPort(opts);
  const draw = (v: StatusView, why: string): void => {
    if (opts.json) {
      process.stdout.write(JSON.stringify({ at: new Date().toISOString(), reason: why, ...v.res }) + '\n');
      return;
    }
    const text = [...v.warnings.map((w) => `warning: ${w}`), renderStatus(v, port)].join('\n');
    const stamp = `${new Date().toISOString().slice(11, 19)}  ${why}`;
    if (tty) process.stdout.write(`\x1b[H\x1b[2J${style().dim(`${stamp} · pilot status ${app} --watch (Ctrl-C to stop)`)}\n\n${text}\n`);
    else process.stdout.write(`--- ${stamp}\n${text}\n`);
  };
  draw(first, 'now');
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let timer: NodeJS.Timeout | undefined;
  let pending: string | undefined;
  let drawing = Promise.resolve();
  const refresh = (): void => {
    const why = pending ?? 'event';
    pending = undefined;
    drawing = drawing
      .then(async () => draw(await loadStatus(api, app), why))
      .catch((err: unknown) => {
        process.stderr.write(`status not refreshed: ${(err as Error).message}\n`);
      });
  };
  try {
    await followEvents(api, {
      app,
      after: undefined,
      signal: stop.signal,
      on: (item) => {
        pending = item.type === 'event' ? describeEvent(item.event).replace(/^\S+\s+#\d+\s+/, '') : `--- ${item.reset.message}`;
        // Events come in bursts (a rollout step: plan, placements, states): one redraw per burst.
        clearTimeout(timer);
        timer = setTimeout(refresh, 150);
      },
      onDrop: (err) => process.stderr.write(`event stream dropped (${(err as Error).message}); reconnecting…\n`),
    });
  } finally {
    clearTimeout(timer);
    await drawing;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The human text of `pilot status`. */
function renderStatus(v: StatusView, port: string | undefined): string {
  const { res, traffic } = v;
  {
    const a = res.app;
    const shown = res.revisions.find((r) => r.active) ?? res.revisions[0];
    const out = [
      `app ${a.name}: revision ${a.activeRevision ?? 'none'} active, ${a.replicas} replica(s), hosts ${a.hosts.join(', ')}`,
      ...(port ? [`url http://${a.name}.localhost:${port}`] : []),
      ...(shown?.node
        ? [`node ${shown.node.version} (from ${shown.node.source})${shown.active ? '' : ` (revision ${shown.number})`}`]
        : []),
      ...(res.app.autoscale ? autoscaleLines(res.app.autoscale) : []),
      ...volumeLines(res.volumes ?? []),
      ...(res.pending ? [`pending: ${res.pending.count} instance(s) waiting: ${res.pending.reason}`] : []),
      ...(res.rollout ? ['', ...rolloutLines(res.rollout, traffic, a.activeRevision)] : []),
      ...(res.experiment
        ? [
            `experiment #${res.experiment.id}: a = revision ${res.experiment.variants[0]!.revision} (${100 - res.experiment.split}%), b = revision ${res.experiment.variants[1]!.revision} (${res.experiment.split}%), sticky by ${formatStickyBy(res.experiment.by)} (\`pilot experiment status ${a.name}\`)`,
          ]
        : []),
      '',
      'instances:',
      res.instances.length === 0
        ? '  none'
        : (dockerInstanceTable(res) ??
          table(
            ['ID', 'REV', 'NODE', 'ADDRESS', 'PID', 'STATE', 'DESIRED', 'RESTARTS', 'LAST ERROR'],
            res.instances.map((i) => [
              i.id,
              i.revision,
              i.node,
              i.port ? `${i.address}:${i.port}` : null,
              i.pid,
              stateCell(i.state),
              i.desired,
              i.restarts,
              i.lastError,
            ]),
          )),
      ...(res.orphans && res.orphans.length > 0
        ? [
            '',
            'orphans (running, unknown to the control plane; `pilot orphans stop ID`):',
            table(
              ['ID', 'REV', 'NODE', 'STATE', 'PORT', 'PID'],
              res.orphans.map((o) => [o.id, o.revision ?? null, o.node, o.state, o.port ?? null, o.pid ?? null]),
            ),
          ]
        : []),
      ...(res.routing && res.routing.problems.length > 0
        ? ['', 'routing problems (left out of the routing table):', ...res.routing.problems.map((p) => `  ${p}`)]
        : []),
      '',
      'revisions:',
      table(
        ['REV', 'COMMIT', 'ARTIFACT', 'NODE', 'CREATED', ''],
        res.revisions.map((r) => [
          r.number,
          r.commit.slice(0, 12) + (r.dirty ? '+dirty' : ''),
          r.artifact.slice(0, 19),
          r.node?.version,
          ago(r.createdAt),
          r.active ? 'active' : '',
        ]),
      ),
      '',
      'rollouts:',
      table(
        ['ID', 'TO', 'FROM', 'STATUS', 'STARTED', 'REASON'],
        res.rollouts.map((r) => [r.id, r.toRevision, r.fromRevision, r.status, ago(r.startedAt), r.reason]),
      ),
    ];
    return [...out, ...(v.swarm ?? [])].join('\n');
  }
}

interface Health {
  disk?: { path: string; freeBytes: number; lowBelowBytes: number; low: boolean };
  log?: { droppedLines: number; failing: string | null };
}

/** What the control plane's /healthz says is wrong with its machine (low disk, logging suspended). */
export function healthWarnings(h: Health | undefined): string[] {
  const out: string[] = [];
  const mb = (n: number): string => `${Math.round(n / 1024 / 1024)} MiB`;
  if (h?.disk?.low)
    out.push(
      `the control plane's disk is low: ${mb(h.disk.freeBytes)} free under ${h.disk.path} (below ${mb(h.disk.lowBelowBytes)}); free space or \`pilot gc\``,
    );
  if (h?.log?.failing) out.push(`the control plane cannot write its log (${h.log.failing}): ${h.log.droppedLines} line(s) dropped so far`);
  return out;
}

export async function rollback(app: string, opts: GlobalOptions & { to?: string; dryRun?: boolean }): Promise<void> {
  const api = apiClient(opts);
  let to: number | undefined;
  if (opts.to !== undefined) {
    to = Number(opts.to);
    if (!Number.isInteger(to) || to < 1) throw fail.invalidRollbackTarget({ to: opts.to });
  }
  if (opts.dryRun) {
    const plan = await api.planRollback(app, to);
    output(opts, plan, () => planLines(plan, `rolling ${app} back to revision ${plan.revision}`).join('\n'));
    return;
  }
  const res = await api.call<{ rollout: { id: number; toRevision: number } }>(
    'POST',
    `/api/v1/apps/${encodeURIComponent(app)}/rollback`,
    to === undefined ? {} : { to },
  );
  // On a terminal a status line with a spinner follows the rollout (progress.ts); plain lines otherwise.
  const bar = opts.json ? undefined : progress();
  const say = bar ? (l: string) => bar.line(l) : () => undefined;
  say(`rolling ${app} back to revision ${res.rollout.toRevision} (rollout #${res.rollout.id})`);
  try {
    await followRollout(api, app, res.rollout.id, { timeoutMs: 5 * 60_000, out: say });
  } finally {
    bar?.done();
  }
  if (opts.json) process.stdout.write(JSON.stringify(res, null, 2) + '\n');
}

/** What the API says of a running rollout (core/strategy.ts RolloutView). */
interface RolloutViewRes {
  id: number;
  toRevision: number;
  strategy: string;
  description: string;
  step?: number;
  steps?: number;
  weights: { stable: number; canary: number };
  waiting: string;
  verdict?: { verdict: string; reason: string };
  command?: string;
}

export async function promote(app: string, opts: GlobalOptions & { full?: boolean }): Promise<void> {
  const res = await apiClient(opts).call<{ rollout: { id: number; toRevision: number } }>(
    'POST',
    `/api/v1/apps/${encodeURIComponent(app)}/promote`,
    opts.full ? { full: true } : {},
  );
  output(opts, res, () =>
    opts.full
      ? `rollout #${res.rollout.id}: revision ${res.rollout.toRevision} goes to 100% as soon as all its instances are ready`
      : `rollout #${res.rollout.id}: revision ${res.rollout.toRevision} moves to its next step`,
  );
}

export async function abort(app: string, opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ rollout: { id: number; toRevision: number } }>(
    'POST',
    `/api/v1/apps/${encodeURIComponent(app)}/abort`,
    {},
  );
  output(
    opts,
    res,
    () => `rollout #${res.rollout.id} aborted: all traffic goes back to the stable revision; revision ${res.rollout.toRevision} stops`,
  );
}

/** The running rollout in a few lines: strategy, step, weights, per-revision figures, what it waits for. */
function rolloutLines(r: RolloutViewRes, traffic: TrafficRes | undefined, stable: number | null): string[] {
  const step = r.step !== undefined ? `, step ${r.step}/${r.steps}` : '';
  const fig = (rev: number | null): string => {
    const row = traffic?.revisions.find((x) => x.revision === rev);
    if (!row) return '';
    const p99 = row.latencyMs.p99 === null ? '-' : `${row.latencyMs.p99}ms`;
    return ` (${row.rps} req/s, 5xx ${(row.errorRate * 100).toFixed(2)}%, p99 ${p99})`;
  };
  return [
    `rollout #${r.id} to revision ${r.toRevision}: ${r.description}${step}`,
    `  weights: revision ${stable ?? '-'} ${r.weights.stable}%${fig(stable)}, revision ${r.toRevision} ${r.weights.canary}%${fig(r.toRevision)}`,
    ...(r.verdict ? [`  analysis: ${r.verdict.verdict}: ${r.verdict.reason}`] : []),
    `  waiting for ${r.waiting}${r.command ? ` (${r.command} requested)` : ''}`,
  ];
}

interface TrafficRes {
  revisions: { revision: number | null; rps: number; errorRate: number; latencyMs: { p99: number | null } }[];
}

export async function scale(app: string, count: string, opts: GlobalOptions): Promise<void> {
  const n = Number(count);
  const res = await apiClient(opts).call<{ app: string; replicas: number }>('POST', `/api/v1/apps/${encodeURIComponent(app)}/scale`, {
    replicas: Number.isFinite(n) ? n : count,
  });
  output(opts, res, () => `${res.app} scaled to ${res.replicas} replica(s)`);
}

export async function appsCreate(
  name: string,
  opts: GlobalOptions & {
    repo?: string;
    branch?: string;
    secret?: string;
    secretFile?: string;
    githubToken?: string;
    githubTokenFile?: string;
    statusApi?: string;
  },
): Promise<void> {
  if (!opts.repo) throw fail.appsCreateNeedsRepo();
  const secret = secretFrom({ value: opts.secret, flag: '--secret', file: opts.secretFile, fileFlag: '--secret-file' });
  const githubToken = secretFrom({
    value: opts.githubToken,
    flag: '--github-token',
    file: opts.githubTokenFile,
    fileFlag: '--github-token-file',
    env: 'PILOT_GITHUB_TOKEN',
  });
  const secretFlag = opts.secretFile !== undefined ? '--secret-file' : '--secret';
  const res = await apiClient(opts)
    .call<{
      app: { name: string; repo: string; branch: string; commitStatus: boolean };
      webhook: { path: string; url: string; secret: string; secretGenerated: boolean };
    }>('POST', '/api/v1/apps', {
      name,
      repo: opts.repo,
      branch: opts.branch ?? 'main',
      ...(secret !== undefined ? { secret } : {}),
      ...(githubToken !== undefined ? { githubToken } : {}),
      ...(opts.statusApi ? { statusApiUrl: opts.statusApi } : {}),
    })
    .catch((err: unknown) => {
      throw withFlagNames(err, {
        '/secret': {
          flag: secretFlag,
          hint: 'A webhook secret is 16 to 256 characters (GitHub signs each delivery with it); leave it out and Pilot generates one.',
        },
        '/githubToken': {
          flag:
            opts.githubTokenFile !== undefined
              ? '--github-token-file'
              : opts.githubToken !== undefined
                ? '--github-token'
                : '$PILOT_GITHUB_TOKEN',
        },
        '/branch': { flag: '--branch' },
        '/repo': { flag: '--repo' },
        '/statusApiUrl': { flag: '--status-api', hint: 'An http:// or https:// URL, e.g. https://github.example.com/api/v3.' },
        '/name': { flag: 'NAME' },
      });
    });
  // --json is for scripts that store the webhook secret; the human output never echoes a secret
  // the user gave (it is in their file already), only one Pilot generated.
  output(opts, res, () =>
    [
      `app ${res.app.name}: deploys ${res.app.branch} of ${res.app.repo}${res.app.commitStatus ? ' (commit statuses on)' : ''}`,
      '',
      'GitHub → Settings → Webhooks → Add webhook:',
      `  Payload URL   ${res.webhook.url}   (the URL GitHub can reach; path ${res.webhook.path})`,
      '  Content type  application/json',
      `  Secret        ${res.webhook.secretGenerated ? `${res.webhook.secret}   (generated; shown now only)` : '(the one you gave)'}`,
      '  Events        Just the push event',
    ].join('\n'),
  );
}

export async function secretsSet(
  app: string,
  name: string,
  value: string | undefined,
  opts: GlobalOptions & { fromFile?: string; build?: boolean },
): Promise<void> {
  let v = value;
  if (v !== undefined && v !== '' && v !== '-' && opts.fromFile !== undefined) throw fail.secretValueTwice();
  if (opts.fromFile !== undefined) v = readSecretFile(opts.fromFile, '--from-file');
  else if (v === undefined || v === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    v = Buffer.concat(chunks)
      .toString('utf8')
      .replace(/\r?\n$/, '');
  } else warnSecretOnArgv('a secret value', '--from-file FILE or stdin (`pilot secrets set APP NAME < FILE`)');
  const res = await apiClient(opts).call<{ app: string; secret: string; scope: string; note: string }>(
    'PUT',
    `/api/v1/apps/${encodeURIComponent(app)}/secrets/${encodeURIComponent(name)}`,
    { value: v, ...(opts.build ? { scope: 'build' } : {}) },
  );
  output(
    opts,
    res,
    () => `${res.scope === 'build' ? 'build secret' : 'secret'} ${res.secret} of ${res.app} stored (encrypted); ${res.note}`,
  );
}

export async function secretsList(app: string, opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ secrets: { name: string; scope: string; updatedAt: number }[] }>(
    'GET',
    `/api/v1/apps/${encodeURIComponent(app)}/secrets`,
  );
  output(opts, res, () =>
    res.secrets.length === 0
      ? 'no secrets'
      : table(
          ['NAME', 'FOR', 'UPDATED'],
          res.secrets.map((s) => [s.name, s.scope === 'build' ? 'build' : 'app', ago(s.updatedAt)]),
        ),
  );
}

export async function secretsRemove(app: string, name: string, opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ app: string; deleted: string }>(
    'DELETE',
    `/api/v1/apps/${encodeURIComponent(app)}/secrets/${encodeURIComponent(name)}`,
  );
  output(opts, res, () => `secret ${res.deleted} of ${res.app} removed`);
}

/** `pilot apps rm APP`: stop its instances, drop its routes and hosts, forget its secrets and webhook. */
export async function appsRemove(app: string, opts: GlobalOptions & { yes?: boolean }): Promise<void> {
  if (!opts.yes) {
    if (!process.stdin.isTTY) throw fail.removalNeedsConfirmation({ app });
    const { createInterface } = await import('node:readline/promises');
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    const answer = await rl.question(
      `Remove app "${app}": stop its instances, drop its routes, hosts, secrets and webhook? Type the app name to confirm: `,
    );
    rl.close();
    if (answer.trim() !== app) throw fail.removalNotConfirmed({ app });
  }
  const res = await apiClient(opts).call<{ app: string; stopping: number }>('DELETE', `/api/v1/apps/${encodeURIComponent(app)}`);
  output(
    opts,
    res,
    () => `app ${res.app} removed: ${res.stopping} instance(s) stopping, routes and hosts released (artifacts stay until \`pilot gc\`)`,
  );
}
