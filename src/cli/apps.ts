/** `pilot apps`, `pilot status APP`, `pilot rollback APP`, `pilot scale APP N`. */
import { fail } from '../core/errors.js';
import { readSecretFile, secretFrom, warnSecretOnArgv, withFlagNames } from './secret-input.js';
import { followRollout } from '../pipeline/follow-rollout.js';
import { dockerInstanceTable } from './images.js';
import { ago, apiClient, output, table, type GlobalOptions } from './context.js';
import { volumeLines, type VolumeRow } from './volumes.js';
import { planLines } from './plan-view.js';

interface AppRow {
  name: string;
  activeRevision: number | null;
  replicas: number;
  ready: number;
  url: string;
  updatedAt: number;
}

export async function apps(opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ apps: AppRow[] }>('GET', '/api/v1/apps');
  output(opts, res, () =>
    res.apps.length === 0
      ? 'no apps yet: deploy one with `pilot run DIR`'
      : table(
          ['APP', 'REVISION', 'READY', 'UPDATED', 'URL'],
          res.apps.map((a) => [a.name, a.activeRevision, `${a.ready}/${a.replicas}`, ago(a.updatedAt), a.url]),
        ),
  );
}

interface StatusRes {
  app: { name: string; activeRevision: number | null; replicas: number; hosts: string[] };
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
}

export async function status(app: string, opts: GlobalOptions): Promise<void> {
  const api = apiClient(opts);
  const res = await api.call<StatusRes>('GET', `/api/v1/apps/${encodeURIComponent(app)}`);
  const health = await api.call<Health>('GET', '/healthz').catch(() => undefined);
  if (!opts.json) for (const w of healthWarnings(health)) process.stderr.write(`warning: ${w}\n`);
  output(opts, res, () => {
    const a = res.app;
    const shown = res.revisions.find((r) => r.active) ?? res.revisions[0];
    const out = [
      `app ${a.name}: revision ${a.activeRevision ?? 'none'} active, ${a.replicas} replica(s), hosts ${a.hosts.join(', ')}`,
      ...(shown?.node
        ? [`node ${shown.node.version} (from ${shown.node.source})${shown.active ? '' : ` (revision ${shown.number})`}`]
        : []),
      ...volumeLines(res.volumes ?? []),
      ...(res.pending ? [`pending: ${res.pending.count} instance(s) waiting: ${res.pending.reason}`] : []),
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
              i.state,
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
    return out.join('\n');
  });
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
  const say = opts.json ? () => undefined : (l: string) => process.stdout.write(l + '\n');
  say(`rolling ${app} back to revision ${res.rollout.toRevision} (rollout #${res.rollout.id})`);
  await followRollout(api, app, res.rollout.id, { timeoutMs: 5 * 60_000, out: say });
  if (opts.json) process.stdout.write(JSON.stringify(res, null, 2) + '\n');
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
