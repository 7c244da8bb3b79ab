/**
 * The run queue's worker pool: takes queued webhook runs from the store (one build at a time per
 * app, a few apps at once; a run that only follows its rollout holds neither) and performs each with the same pipeline `pilot run` uses, talking to this
 * control plane's API over loopback. On start-up, runs that were in flight when the server died are
 * marked interrupted and retried once. Every change of a run goes through the run ledger (run-ledger.ts).
 *
 *   webhook ─► store: queued ─► claimNextRun ─► running ─► runPipeline ─► succeeded | failed | superseded
 *                                  ▲                           │
 *   restart: running ─► interrupted + a queued retry (attempt 2)   └─ commit status to GitHub (optional)
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isPilotError, fail } from '../core/errors.js';
import { normalizeRepo } from '../core/repo-url.js';
import type { RunRecord } from '../core/types.js';
import { ApiClient } from '../api/client.js';
import type { SecretBox } from '../store/secret-box.js';
import type { AppRecord, Store } from '../store/store.js';
import type { RunLedger } from './run-ledger.js';

export interface WorkerOptions {
  store: Store;
  /** The only writer of runs: claims, a run that cannot start, recovery. */
  ledger: RunLedger;
  box: SecretBox;
  log: Logger;
  home: string;
  apiUrl: string;
  adminToken: string;
  /** Base URL people reach the API at, for links in commit statuses. */
  publicUrl: string;
  concurrency?: number;
  /**
   * Quiet period (Jenkins' term): a queued run waits this long before it may start, so a burst of
   * pushes becomes one deploy of the newest commit (the older queued runs are superseded).
   */
  quietMs?: number;
}

export class RunWorker {
  private readonly running = new Map<number, { app: string; abort: AbortController; done: Promise<void> }>();
  private stopped = false;
  private claiming = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: WorkerOptions) {}

  /** Recover interrupted runs, then start taking work (and poll now and then, in case a kick was missed). */
  async start(): Promise<void> {
    const interrupted = await this.o.ledger.recoverInterruptedRuns(Date.now());
    for (const r of interrupted) this.o.log.warn({ run: r.id, app: r.app, commit: r.commit }, r.error ?? 'run interrupted');
    this.timer = setInterval(() => this.kick(), 1000);
    this.timer.unref();
    this.kick();
  }

  /** Abort what runs (it stays `running` in the store and is retried after the restart) and stop. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const r of this.running.values()) r.abort.abort();
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
  }

  private get quietMs(): number {
    return this.o.quietMs ?? 2000;
  }

  /** A run was queued: look again when its quiet period is over. */
  queued(): void {
    // Not now: the new run is in its quiet period, and this is called inside the webhook request.
    setTimeout(() => this.kick(), this.quietMs + 20).unref();
  }

  /** Take as many queued runs as the pool allows. */
  kick(): void {
    if (this.stopped || this.claiming) return;
    this.claiming = true;
    // A failed claim (the database unwritable: a full disk) is logged; the next tick tries again.
    void this.claim()
      .catch((err: unknown) => this.o.log.error({ err }, 'cannot claim queued runs; will retry'))
      .finally(() => {
        this.claiming = false;
      });
  }

  /**
   * Runs that take a slot: those that build. A run that made its rollout only follows it (a canary
   * may take an hour): it holds no slot and no app (store.claimNextRun), so a newer push goes ahead.
   */
  private async building(): Promise<number> {
    let n = 0;
    for (const id of this.running.keys()) if ((await this.o.store.getRun(id))?.rolloutId === undefined) n++;
    return n;
  }

  private async claim(): Promise<void> {
    while (!this.stopped && (await this.building()) < (this.o.concurrency ?? 2)) {
      const now = Date.now(); // wall clock: created_at is, and a short scheduling delay tolerates jumps
      // The store keeps one run per app: an app with a `running` run is not claimed again.
      const run = await this.o.ledger.claimNextRun(now, now - this.quietMs);
      if (!run) return;
      const abort = new AbortController();
      const done = this.execute(run, abort.signal)
        .catch((err: unknown) =>
          this.o.log.error({ err, run: run.id }, 'run failed outside its pipeline (its record could not be updated)'),
        )
        .finally(() => {
          this.running.delete(run.id);
          this.kick();
        });
      this.running.set(run.id, { app: run.app, abort, done });
    }
  }

  private async execute(run: RunRecord, signal: AbortSignal): Promise<void> {
    const app = await this.o.store.getApp(run.app);
    const log = this.o.log.child({ run: run.id, app: run.app });
    if (!app?.repo || !run.commit) {
      await this.o.ledger.fail(run.id, 'source: the app has no repository configured', Date.now());
      return;
    }
    const api = new ApiClient(this.o.apiUrl, this.o.adminToken);
    log.info({ commit: run.commit, attempt: run.attempt }, 'run started');
    await this.status(app, run, 'pending', 'Pilot is deploying this commit');
    try {
      // The pipeline (git, tar, yaml, the build steps) loads with the first run, not at start: an idle server stays smaller.
      const { runPipeline } = await import('../pipeline/runner.js');
      const r = await runPipeline(
        {
          source: {
            kind: 'git',
            app: run.app,
            repo: app.repo,
            commit: run.commit,
            runId: run.id,
            cacheRoot: join(this.o.home, 'cache', 'git'),
          },
          trigger: 'webhook',
          out: () => undefined, // the run log on the server has every line
          signal,
        },
        api,
      );
      log.info({ revision: r.revision }, 'run succeeded');
      await this.status(app, run, 'success', `revision ${r.revision} is live`);
    } catch (err) {
      const pe = isPilotError(err) ? err : fail.unexpected({ message: String(err) });
      if (signal.aborted) return; // server stopping: retried after the restart
      log.warn({ code: pe.code, error: pe.message }, 'run did not deploy');
      await this.status(
        app,
        run,
        pe.code === 'superseded' ? 'success' : 'failure',
        pe.code === 'superseded' ? 'a newer push was deployed' : pe.message,
      );
    }
  }

  /** Best effort: a commit status on GitHub when the app has a token. Never fails the run. */
  private async status(app: AppRecord, run: RunRecord, state: 'pending' | 'success' | 'failure', description: string): Promise<void> {
    if (!app.githubToken || !app.repo || !run.commit) return;
    const fullName = run.repoFullName ?? normalizeRepo(app.repo).split('/').slice(-2).join('/');
    try {
      const { postCommitStatus } = await import('./github-status.js');
      const r = await postCommitStatus({
        apiBaseUrl: app.statusApiUrl ?? 'https://api.github.com',
        token: this.o.box.open(app.githubToken),
        fullName,
        commit: run.commit,
        state,
        targetUrl: `${this.o.publicUrl}/api/v1/runs/${run.id}`,
        description,
      });
      if (!r.ok) this.o.log.warn({ run: run.id, status: r.status, error: r.error }, 'commit status not accepted by GitHub');
    } catch (err) {
      this.o.log.warn({ run: run.id, err: (err as Error).message }, 'commit status failed');
    }
  }
}
