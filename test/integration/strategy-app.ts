/**
 * Test support for rollout strategies (test/integration/strategies.test.ts, the fault suite's
 * canary restart, bench/rollout-*.ts): a small app whose behaviour per revision is chosen by a file
 * committed with it, and a request loop through the router that counts every answer by status and
 * revision, connection errors as failures.
 */
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { git, ROOT, sleep, tempDir, type Harness } from './harness.js';

/**
 * What a revision does, read from the file `mode` in its commit:
 *   good         answers 200
 *   fail500      ready (its health check passes) but answers every other request 500
 *   err10        answers every 10th request 500, the others 200
 *   slow         answers 200 after 300 ms
 *   never-ready  listens, but its health check answers 503
 *   crash        prints a line and exits 1 as it starts (a crash loop)
 */
export type AppMode = 'good' | 'fail500' | 'err10' | 'slow' | 'never-ready' | 'crash';

const SERVER = `// A strategy test app: its behaviour comes from the file "mode" of its revision.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
const mode = readFileSync(new URL('./mode', import.meta.url), 'utf8').split('\\n')[0].trim();
const revision = process.env.PILOT_REVISION ?? 'dev';
if (mode === 'crash') {
  console.error('strategy app: crashing on purpose (mode crash)');
  process.exit(1);
}
let served = 0;
const server = createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(mode === 'never-ready' ? 503 : 200);
    res.end(mode);
    return;
  }
  const send = (code) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ revision, mode }));
  };
  if (mode === 'fail500' || (mode === 'err10' && ++served % 10 === 0)) return send(500);
  if (mode === 'slow') return void setTimeout(() => send(200), 300);
  send(200);
});
server.listen(Number(process.env.PORT), () => console.log('strategy app: revision ' + revision + ' (' + mode + ') listening'));
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 3000).unref();
});
`;

/** pilot.yaml of the app: a short health interval and drain, the given strategy block (yaml, indented under `strategy:`), `extra` lines. */
export function appYaml(name: string, replicas: number, strategy: string | undefined, extra = '', readyTimeout = '20s'): string {
  return [
    `name: ${name}`,
    `replicas: ${replicas}`,
    'health:',
    '  path: /healthz',
    '  interval: 200ms',
    'deploy:',
    `  ready_timeout: ${readyTimeout}`,
    '  drain: 300ms',
    '  stop_timeout: 3s',
    ...(strategy === undefined
      ? []
      : [
          'strategy:',
          ...strategy
            .trim()
            .split('\n')
            .map((l) => `  ${l}`),
        ]),
    extra,
    '',
  ].join('\n');
}

/** A git repository holding the app (from examples/hello's package files), committed in `mode`. */
export async function makeStrategyRepo(
  h: Harness,
  name: string,
  replicas: number,
  strategy: string | undefined,
  mode: AppMode = 'good',
): Promise<string> {
  const dir = h.track(tempDir(`strategy-${name}`));
  cpSync(join(ROOT, 'examples/hello/package.json'), join(dir, 'package.json'));
  cpSync(join(ROOT, 'examples/hello/package-lock.json'), join(dir, 'package-lock.json'));
  writeFileSync(join(dir, 'server.js'), SERVER);
  writeFileSync(join(dir, 'mode'), `${mode}\n`);
  writeFileSync(join(dir, 'pilot.yaml'), appYaml(name, replicas, strategy));
  await git(dir, 'init', '-q');
  await git(dir, 'add', '-A');
  await git(dir, 'commit', '-qm', `${name}: ${mode}`);
  return dir;
}

let commits = 0;
/** Commit a new revision of the app: its mode and, when given, its pilot.yaml. Every commit differs (a serial in the file). */
export async function commitRevision(repo: string, mode: AppMode, yaml?: string): Promise<string> {
  writeFileSync(join(repo, 'mode'), `${mode}\n# ${++commits}\n`);
  if (yaml !== undefined) writeFileSync(join(repo, 'pilot.yaml'), yaml);
  await git(repo, 'add', '-A');
  await git(repo, 'commit', '-qm', `${mode} #${commits}`);
  return git(repo, 'rev-parse', 'HEAD');
}

/** One answer seen by the loop (times in ms of performance.now()). */
export interface Seen {
  readonly start: number;
  readonly end: number;
  /** HTTP status; 0: no answer (connection refused, reset, timeout). */
  readonly status: number;
  /** The revision that answered (its body), null when the body did not say. */
  readonly revision: number | null;
  readonly error?: string | undefined;
}

export interface LoopSummary {
  readonly seen: readonly Seen[];
  readonly total: number;
  /** Not 2xx, or no answer at all. */
  readonly failed: number;
  /** status → count ("0" for no answer). */
  readonly byStatus: Readonly<Record<string, number>>;
  /** revision → count of 2xx answers. */
  readonly okByRevision: Readonly<Record<string, number>>;
  /** The first few failures, for messages. */
  readonly failures: readonly string[];
}

/** Clients sending one request after another to the app through the router; `stop()` ends them and counts. */
export class RequestLoop {
  private running = true;
  private readonly seen: Seen[] = [];
  private readonly done: Promise<void[]>;
  // Connections are re-opened now and then, as real clients do (kept-alive ones alone would hide refusals).
  private readonly dispatcher = new Agent({ keepAliveTimeout: 500, connections: 8 });

  constructor(
    private readonly router: string,
    private readonly host: string,
    clients = 4,
    private readonly pauseMs = 5,
  ) {
    this.done = Promise.all(Array.from({ length: clients }, () => this.client()));
  }

  private async client(): Promise<void> {
    while (this.running) {
      const start = performance.now();
      try {
        const res = await request(this.router + '/', {
          headers: { host: this.host },
          dispatcher: this.dispatcher,
          headersTimeout: 15_000,
          bodyTimeout: 15_000,
        });
        const text = await res.body.text();
        let revision: number | null = null;
        try {
          revision = Number((JSON.parse(text) as { revision: string }).revision);
        } catch {
          // a body from the router, not the app
        }
        this.seen.push({
          start,
          end: performance.now(),
          status: res.statusCode,
          revision,
          error: res.statusCode >= 300 ? text.slice(0, 160) : undefined,
        });
      } catch (err) {
        this.seen.push({ start, end: performance.now(), status: 0, revision: null, error: (err as Error).message });
      }
      if (this.pauseMs > 0) await sleep(this.pauseMs);
    }
  }

  /** What was seen so far (the loop goes on). */
  get answers(): readonly Seen[] {
    return this.seen;
  }

  async stop(): Promise<LoopSummary> {
    this.running = false;
    await this.done;
    await this.dispatcher.close();
    return summarise(this.seen);
  }
}

export function summarise(seen: readonly Seen[]): LoopSummary {
  const byStatus: Record<string, number> = {};
  const okByRevision: Record<string, number> = {};
  const failures: string[] = [];
  let failed = 0;
  for (const s of seen) {
    byStatus[s.status] = (byStatus[s.status] ?? 0) + 1;
    if (s.status >= 200 && s.status < 300) okByRevision[String(s.revision)] = (okByRevision[String(s.revision)] ?? 0) + 1;
    else {
      failed++;
      if (failures.length < 5) failures.push(`${s.status} r${s.revision}: ${s.error ?? ''}`);
    }
  }
  return { seen, total: seen.length, failed, byStatus, okByRevision, failures };
}

/** The rollout's weight of the new revision over time, polled from the API (for weight plausibility per step). */
export class WeightWatch {
  private running = true;
  /** [performance.now(), step (1-based) or 0, canary weight], one entry per change. */
  readonly changes: [number, number, number][] = [];
  private readonly done: Promise<void>;

  constructor(h: Harness, app: string, everyMs = 100) {
    this.done = (async () => {
      while (this.running) {
        try {
          const r = (await h.apiCall('GET', `/api/v1/apps/${app}`)).json as {
            rollout: { step?: number; weights: { canary: number } } | null;
          };
          const step = r.rollout?.step ?? 0;
          const w = r.rollout?.weights.canary ?? -1;
          const last = this.changes[this.changes.length - 1];
          if (!last || last[1] !== step || last[2] !== w) this.changes.push([performance.now(), step, w]);
        } catch {
          // the API was busy: the next poll
        }
        await sleep(everyMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }

  /**
   * The share of the new revision in the 2xx answers of requests made well inside each weight
   * period (starting `marginMs` after a change was seen and ending before the next): weight → share.
   */
  shares(seen: readonly Seen[], newRevision: number, marginMs = 400): Map<number, { requests: number; share: number }> {
    const out = new Map<number, { requests: number; hit: number }>();
    for (let k = 0; k < this.changes.length; k++) {
      const [t, , w] = this.changes[k]!;
      const next = this.changes[k + 1]?.[0] ?? Infinity;
      if (w <= 0) continue;
      for (const s of seen) {
        if (s.status !== 200 || s.start < t + marginMs || s.end > next - 150) continue;
        const acc = out.get(w) ?? { requests: 0, hit: 0 };
        acc.requests++;
        if (s.revision === newRevision) acc.hit++;
        out.set(w, acc);
      }
    }
    return new Map([...out].map(([w, a]) => [w, { requests: a.requests, share: a.requests === 0 ? 0 : a.hit / a.requests }]));
  }
}
