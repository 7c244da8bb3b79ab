/**
 * Runs: one execution of the deploy process, from whichever place runs it (the CLI, the CD worker).
 * The runner creates a run, reports each step and appends its log; the log is a plain file per run
 * under $PILOT_HOME/runs (append-only, capped). Thin: the routes parse and call the run ledger
 * (cd/run-ledger.ts), the only writer of runs, which refuses illegal or late reports.
 */
import { appendFile, mkdir, open, stat } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { fail } from '../core/errors.js';
import { isDiskFull } from '../disk/disk.js';
import { assertName, isCommitSha, isDigest } from '../core/names.js';
import type { RunRecord } from '../core/types.js';
import { isRunFinished, type RunReport } from '../core/run-machine.js';
import { PIPELINE_STEP_NAMES, type RunLedger } from '../cd/run-ledger.js';
import type { Store } from '../store/store.js';
import type { SecretBox } from '../store/secret-box.js';
import { appMasker } from './source-routes.js';

const MAX_LOG_BYTES = 50 * 1024 * 1024;
const Step = Type.Object(
  {
    name: Type.Union(PIPELINE_STEP_NAMES.map((s) => Type.Literal(s))),
    status: Type.Union(['pending', 'running', 'succeeded', 'failed', 'skipped'].map((s) => Type.Literal(s))),
    startedAt: Type.Optional(Type.Number()),
    finishedAt: Type.Optional(Type.Number()),
    error: Type.Optional(Type.String({ maxLength: 8000 })),
  },
  { additionalProperties: false },
);

const CreateBody = Type.Object(
  {
    app: Type.String(),
    trigger: Type.Optional(Type.Union([Type.Literal('cli'), Type.Literal('webhook'), Type.Literal('rollback')])),
    commit: Type.Optional(Type.String()),
    dirty: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const PatchBody = Type.Object(
  {
    status: Type.Optional(Type.Union(['running', 'succeeded', 'failed', 'cancelled', 'superseded'].map((s) => Type.Literal(s)))),
    rolloutId: Type.Optional(Type.Integer({ minimum: 1 })),
    steps: Type.Optional(Type.Array(Step, { maxItems: 10 })),
    artifact: Type.Optional(Type.String()),
    revision: Type.Optional(Type.Integer({ minimum: 1 })),
    error: Type.Optional(Type.String({ maxLength: 8000 })),
    commit: Type.Optional(Type.String()),
    dirty: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

/**
 * Wakes the followers of a run's log: when lines are appended (this route is the log's only
 * writer) and when the run's state changes (its events in the store's feed).
 */
class RunLogWaiters {
  private readonly waiting = new Map<number, Set<() => void>>();

  constructor(store: Store) {
    store.subscribeEvents((events) => {
      for (const e of events) if (e.kind.startsWith('run.') && typeof e.payload.run === 'number') this.wake(e.payload.run);
    });
  }

  wake(run: number): void {
    const set = this.waiting.get(run);
    if (!set) return;
    this.waiting.delete(run);
    for (const w of set) w();
  }

  /** Resolve at the next append or state change of the run, or after `ms` at the latest. */
  next(run: number, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const set = this.waiting.get(run) ?? new Set();
      this.waiting.set(run, set);
      const done = (): void => {
        clearTimeout(t);
        set.delete(done);
        if (set.size === 0 && this.waiting.get(run) === set) this.waiting.delete(run);
        resolve();
      };
      const t = setTimeout(done, ms);
      set.add(done);
    });
  }
}

export function registerRunRoutes(app: FastifyInstance, deps: { store: Store; ledger: RunLedger; runsDir: string; box: SecretBox }): void {
  const { store, ledger, runsDir } = deps;
  const waiters = new RunLogWaiters(store);
  const logFile = (id: number): string => join(runsDir, `${id}.log`);
  const mustGetRun = async (raw: string): Promise<RunRecord> => {
    const id = Number(raw);
    const run = Number.isInteger(id) && id > 0 ? await store.getRun(id) : undefined;
    if (!run) throw fail.runNotFoundRaw({ raw });
    return run;
  };

  app.post<{ Body: { app: string; trigger?: RunRecord['trigger']; commit?: string; dirty?: boolean } }>(
    '/api/v1/runs',
    { schema: { body: CreateBody } },
    async (req, reply) => {
      const name = assertName(req.body.app);
      if (req.body.commit !== undefined && !isCommitSha(req.body.commit)) throw fail.runCommitNotSha();
      const run = await ledger.startForegroundRun({
        app: name,
        trigger: req.body.trigger ?? 'cli',
        commit: req.body.commit,
        dirty: req.body.dirty ?? false,
        now: Date.now(),
      });
      await mkdir(runsDir, { recursive: true, mode: 0o700 });
      void reply.status(201);
      return { run };
    },
  );

  app.patch<{ Params: { id: string }; Body: RunReport }>('/api/v1/runs/:id', { schema: { body: PatchBody } }, async (req) => {
    const run = await mustGetRun(req.params.id);
    const b = req.body;
    if (b.artifact !== undefined && !isDigest(b.artifact)) throw fail.runArtifactInvalid();
    if (b.commit !== undefined && !isCommitSha(b.commit)) throw fail.runCommitNotSha();
    // The ledger decides (core/run-machine.ts): a report on an ended run is refused (409 run_finished).
    return { run: await ledger.report(run.id, b, Date.now()) };
  });

  app.post<{ Params: { id: string }; Body: string }>('/api/v1/runs/:id/log', async (req, reply) => {
    const run = await mustGetRun(req.params.id);
    // Secrets never reach the log file, whoever sends the lines (the CLI, the CD worker).
    const mask = await appMasker(store, deps.box, run.app);
    const text = (typeof req.body === 'string' ? req.body : '').split('\n').map(mask).join('\n');
    const file = logFile(run.id);
    const size = await stat(file).then(
      (s) => s.size,
      () => 0,
    );
    if (size + Buffer.byteLength(text) > MAX_LOG_BYTES) throw fail.runLogTooLarge({ maxLogBytes: MAX_LOG_BYTES / 1024 / 1024 });
    await mkdir(runsDir, { recursive: true, mode: 0o700 });
    await appendFile(file, text, { mode: 0o600 }); // run logs name the app's build; private like the rest of $PILOT_HOME
    waiters.wake(run.id);
    void reply.status(204);
  });

  app.get<{ Querystring: { app?: string; limit?: string } }>('/api/v1/runs', async (req) => {
    const limit = Math.min(Math.max(Number(req.query.limit ?? 50) || 50, 1), 1000);
    if (req.query.app !== undefined) assertName(req.query.app);
    const runs = await store.listRuns({ app: req.query.app, limit });
    // "No runs yet" only for an app that exists: a typo is an unknown app, as everywhere else.
    if (req.query.app !== undefined && runs.length === 0 && !(await store.getApp(req.query.app))) {
      throw fail.appNotFound({ app: req.query.app });
    }
    // The audit trail ends with the rollout's result.
    return {
      runs: await Promise.all(
        runs.map(async (r) => {
          const ro = r.rolloutId === undefined ? undefined : await store.getRollout(r.rolloutId);
          return { ...r, rollout: ro ? { id: ro.id, status: ro.status, reason: ro.reason ?? null } : null };
        }),
      ),
    };
  });

  app.get<{ Params: { id: string } }>('/api/v1/runs/:id', async (req) => ({ run: await mustGetRun(req.params.id) }));

  app.get<{ Params: { id: string }; Querystring: { follow?: string } }>('/api/v1/runs/:id/log', async (req, reply) => {
    const run = await mustGetRun(req.params.id);
    const file = logFile(run.id);
    if (req.query.follow !== '1' && req.query.follow !== 'true') {
      const exists = await stat(file).then(
        () => true,
        () => false,
      );
      void reply.type('text/plain; charset=utf-8');
      return exists ? createReadStream(file) : '';
    }
    // Follow: send what is there, then what is appended, until the run has ended and all is sent.
    reply.hijack();
    const out = reply.raw;
    out.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache' });
    out.flushHeaders(); // the follower knows it is connected before the first line exists
    let pos = 0;
    let closed = false;
    let ended: RunRecord | null | undefined; // set once the run is over: one last read, then stop
    out.on('close', () => {
      closed = true;
      waiters.wake(run.id);
    });
    // Hijacked: Fastify no longer answers for this request, so a failure here (the log file
    // unreadable, the database away) ends the stream itself, with a last line saying why.
    try {
      while (!closed) {
        const size = await stat(file).then(
          (s) => s.size,
          () => 0,
        );
        if (size > pos) {
          const fh = await open(file, 'r');
          try {
            const buf = Buffer.alloc(Math.min(size - pos, 1024 * 1024));
            const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
            pos += bytesRead;
            out.write(buf.subarray(0, bytesRead));
          } finally {
            await fh.close();
          }
          continue;
        }
        if (ended !== undefined) {
          out.write(`--- run #${run.id} ${ended?.status ?? 'gone'}${ended?.error ? `: ${ended.error}` : ''}\n`);
          break;
        }
        // Registered before the checks below, so an append or a state change between them is not missed.
        const woken = waiters.next(run.id, 10_000);
        if (
          (await stat(file).then(
            (s) => s.size,
            () => 0,
          )) > pos
        )
          continue;
        const now = await store.getRun(run.id);
        if (!now || isRunFinished(now.status)) {
          ended = now ?? null;
          continue;
        }
        // Woken by the next append or run event; the 10 s bound only re-checks, it is not how news arrives.
        await woken;
      }
    } catch (err) {
      req.log.warn({ err, run: run.id }, 'run log follow failed');
      if (!closed) out.write(`--- the log cannot be followed further: ${isDiskFull(err) ? 'the disk is full' : 'server error'}\n`);
    } finally {
      out.end();
    }
  });
}
