import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import fc from 'fast-check';
import ts from 'typescript';
import { resolveAppConfig } from '../core/app-config.js';
import { isPilotError } from '../core/errors.js';
import { isRunFinished, runTransitionAllowed } from '../core/run-machine.js';
import type { RunStatus, StepRecord } from '../core/types.js';
import { MemoryStore } from '../store/memory-store.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { RunPatch, Store } from '../store/store.js';
import { RunLedger } from './run-ledger.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const SHA = 'a'.repeat(40);
const DIGEST = `sha256:${'b'.repeat(64)}`;
const code = (c: string) => (e: unknown) => isPilotError(e) && e.code === c;

/** The Store methods that write run rows: only the ledger (and the stores themselves) may call them. */
const RUN_WRITERS = new Set([
  'createRun',
  'updateRun',
  'enqueueWebhookRun',
  'claimNextRun',
  'recoverInterruptedRuns',
  'finishRolloutRuns',
  'interruptForegroundRuns',
]);

function productionFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...productionFiles(p));
    else if (name.endsWith('.ts') && !/(\.test|\.fixture)\.ts$/.test(name) && !name.startsWith('test-')) out.push(p);
  }
  return out;
}

/**
 * Every use of a run-writing method of the Store (the method as declared in src/store/, resolved by
 * the type checker: the API client's `updateRun`, an HTTP report, is not one), by file.
 */
function runWriteSites(): Map<string, string[]> {
  const files = productionFiles(join(ROOT, 'src'));
  const program = ts.createProgram(files, {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    skipLibCheck: true,
    noEmit: true,
    types: ['node'],
  });
  const checker = program.getTypeChecker();
  const sites = new Map<string, string[]>();
  for (const sf of program.getSourceFiles()) {
    const rel = relative(ROOT, sf.fileName);
    if (!rel.startsWith('src/') || sf.isDeclarationFile) continue;
    const visit = (node: ts.Node): void => {
      const name =
        ts.isPropertyAccessExpression(node) && RUN_WRITERS.has(node.name.text)
          ? node.name
          : ts.isBindingElement(node) && RUN_WRITERS.has((node.propertyName ?? node.name).getText(sf))
            ? (node.propertyName ?? node.name)
            : undefined;
      if (name) {
        const sym = checker.getSymbolAtLocation(name) ?? (ts.isBindingElement(node) ? checker.getSymbolAtLocation(node.name) : undefined);
        const declaredIn = (sym?.declarations ?? []).map((d) => relative(ROOT, d.getSourceFile().fileName));
        if (declaredIn.length === 0 || declaredIn.some((f) => f.startsWith('src/store/'))) {
          const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
          sites.set(rel, [...(sites.get(rel) ?? []), `${rel}:${line + 1} ${name.getText(sf)}`]);
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  return sites;
}

describe('run ledger: the only writer of runs', () => {
  it('nothing in src/ but the ledger and the stores calls the store’s run-writing methods', () => {
    const sites = runWriteSites();
    // The check sees real calls (it cannot pass by seeing nothing): the ledger's own.
    assert.ok((sites.get('src/cd/run-ledger.ts') ?? []).length >= 6, JSON.stringify([...sites]));
    const elsewhere = [...sites].filter(([f]) => f !== 'src/cd/run-ledger.ts' && !f.startsWith('src/store/')).flatMap(([, s]) => s);
    assert.deepEqual(elsewhere, [], 'call the run ledger (src/cd/run-ledger.ts) instead');
  });
});

/** Both stores: the ledger's rules hold whatever store is behind it. */
for (const [kind, make] of [
  ['memory', () => ({ store: new MemoryStore() as Store, done: () => undefined })],
  [
    'sqlite',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'pilot-ledger-'));
      const store = new SqliteStore(join(dir, 'pilot.db'));
      return {
        store: store as Store,
        done: () => {
          store.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  ],
] as const) {
  describe(`run ledger (${kind} store)`, () => {
    const opened: (() => void)[] = [];
    after(() => opened.forEach((d) => d()));
    const fresh = async (): Promise<{ store: Store; ledger: RunLedger }> => {
      const { store, done } = make();
      opened.push(done);
      await store.upsertApp('web', resolveAppConfig({}, 'web'), 1);
      return { store, ledger: new RunLedger(store) };
    };
    const step = (steps: readonly StepRecord[], name: string, status: StepRecord['status']): StepRecord[] =>
      steps.map((s) => (s.name === name ? { ...s, status } : s));

    it('takes a CLI run from start to its end, once', async () => {
      const { store, ledger } = await fresh();
      let run = await ledger.startForegroundRun({ app: 'web', trigger: 'cli', commit: SHA, dirty: false, now: 10 });
      assert.equal(run.status, 'running');
      assert.deepEqual(
        run.steps.map((s) => `${s.name}:${s.status}`),
        ['source:pending', 'build:pending', 'package:pending', 'publish:pending', 'deploy:pending'],
      );
      run = await ledger.report(run.id, { steps: step(run.steps, 'source', 'running') }, 11);
      run = await ledger.report(run.id, { artifact: DIGEST }, 12);
      run = await ledger.report(run.id, { status: 'succeeded' }, 13);
      assert.equal(run.status, 'succeeded');
      assert.equal(run.finishedAt, 13);
      assert.equal(run.artifact, DIGEST);
      // The same report again (a retried request) changes nothing and is not an error.
      assert.equal((await ledger.report(run.id, { status: 'succeeded' }, 99)).finishedAt, 13);
      await assert.rejects(ledger.report(run.id, { status: 'failed', error: 'late' }, 14), code('run_finished'));
      const stored = await store.getRun(run.id);
      assert.equal(stored?.status, 'succeeded');
      assert.equal(stored?.error, undefined);
    });

    it('refuses a late report from a pipeline whose run was cancelled, superseded or interrupted, saying why', async () => {
      const { store, ledger } = await fresh();
      // superseded: a newer push while the first was still queued
      const first = await ledger.enqueueWebhookRun({
        app: 'web',
        deliveryId: 'd1',
        commit: SHA,
        branch: 'main',
        message: 'm',
        author: 'a',
        now: 1,
      });
      const second = await ledger.enqueueWebhookRun({
        app: 'web',
        deliveryId: 'd2',
        commit: 'c'.repeat(40),
        branch: 'main',
        message: 'm',
        author: 'a',
        now: 2,
      });
      assert.equal(second.outcome, 'queued');
      await assert.rejects(ledger.report(first.run.id, { status: 'running' }, 3), (e: unknown) => {
        assert.ok(isPilotError(e));
        assert.equal(e.code, 'run_finished');
        assert.match(e.message, new RegExp(`run #${first.run.id} has already ended superseded: superseded by run #${second.run.id}`));
        return true;
      });
      // interrupted: a CLI run a dead server left running
      const cli = await ledger.startForegroundRun({ app: 'web', trigger: 'cli', commit: SHA, dirty: false, now: 4 });
      assert.equal(await ledger.interruptForegroundRuns(5), 1);
      await assert.rejects(ledger.report(cli.id, { steps: step(cli.steps, 'build', 'running') }, 6), code('run_finished'));
      await assert.rejects(ledger.report(cli.id, { status: 'succeeded' }, 6), /already ended interrupted/);
      // cancelled: the app was removed while its run was queued
      assert.equal(await store.removeApp('web', 7), true);
      const queued = await store.getRun(second.run.id);
      assert.equal(queued?.status, 'cancelled');
      await assert.rejects(ledger.report(second.run.id, { status: 'running' }, 8), /already ended cancelled: the app was removed/);
      assert.equal((await store.getRun(second.run.id))?.status, 'cancelled');
    });

    it('claims, fails a run that cannot start, and refuses illegal moves with run_transition', async () => {
      const { ledger } = await fresh();
      const q = await ledger.enqueueWebhookRun({
        app: 'web',
        deliveryId: 'x1',
        commit: SHA,
        branch: 'main',
        message: 'm',
        author: 'a',
        now: 1,
      });
      await assert.rejects(ledger.report(q.run.id, { status: 'succeeded' }, 2), code('run_transition'));
      const claimed = await ledger.claimNextRun(5, 5);
      assert.equal(claimed?.id, q.run.id);
      assert.equal(claimed?.status, 'running');
      await ledger.report(q.run.id, { steps: [{ name: 'build', status: 'failed' }] }, 6);
      await assert.rejects(ledger.report(q.run.id, { steps: [{ name: 'build', status: 'running' }] }, 6), /step build failed → running/);
      await assert.rejects(
        ledger.report(
          q.run.id,
          {
            steps: [
              { name: 'deploy', status: 'running' },
              { name: 'deploy', status: 'failed' },
            ],
          },
          6,
        ),
        code('run_transition'),
      );
      const failed = await ledger.fail(q.run.id, 'source: the app has no repository configured', 7);
      assert.equal(failed.status, 'failed');
      assert.equal(failed.finishedAt, 7);
      await assert.rejects(ledger.report(q.run.id, { status: 'running' }, 8), code('run_finished'));
      await assert.rejects(ledger.report(9999, { status: 'failed' }, 8), code('run_not_found'));
    });

    it('starts a rollback run bound to its revision and rollout, and the store ends it with the rollout', async () => {
      const { store, ledger } = await fresh();
      const rev = await store.createRevision({
        app: 'web',
        artifact: DIGEST,
        commit: SHA,
        dirty: false,
        config: resolveAppConfig({}, 'web'),
        runId: undefined,
        createdAt: 1,
        image: undefined,
        nodeRuntime: undefined,
      });
      const ro = await store.createRollout({ app: 'web', fromRevision: undefined, toRevision: rev.number, startedAt: 2 });
      const run = await ledger.startRollbackRun({ app: 'web', target: rev, rolloutId: ro.id, now: 2 });
      assert.equal(run.trigger, 'rollback');
      assert.equal(run.status, 'running');
      assert.equal(run.revision, rev.number);
      assert.equal(run.rolloutId, ro.id);
      assert.equal(run.artifact, DIGEST);
      await assert.rejects(ledger.report(run.id, { rolloutId: ro.id + 1 }, 3), /rolloutId is already/);
    });

    it('decides again when the run changed between its read and its write (compare-and-set)', async () => {
      const { store } = await fresh();
      const ledger0 = new RunLedger(store);
      const run = await ledger0.startForegroundRun({ app: 'web', trigger: 'cli', commit: SHA, dirty: false, now: 1 });
      // A store whose first read is answered, then another party ends the run before the ledger writes.
      let raced = false;
      const racing: Store = Object.create(store, {
        getRun: {
          value: async (id: number) => {
            const r = await store.getRun(id);
            if (!raced) {
              raced = true;
              await store.updateRun(id, { status: 'cancelled', error: 'cancelled by the user', finishedAt: 2 });
            }
            return r;
          },
        },
      }) as Store;
      await assert.rejects(
        new RunLedger(racing).report(run.id, { status: 'succeeded' }, 3),
        /already ended cancelled: cancelled by the user/,
      );
      const stored = await store.getRun(run.id);
      assert.equal(stored?.status, 'cancelled', 'the change that landed first stays');
      assert.equal(stored?.finishedAt, 2);
    });

    it('a compare-and-set write that lost writes nothing', async () => {
      const { store, ledger } = await fresh();
      const run = await ledger.startForegroundRun({ app: 'web', trigger: 'cli', commit: SHA, dirty: false, now: 1 });
      const patch: RunPatch = { status: 'succeeded', finishedAt: 5, artifact: DIGEST, ifStatus: 'queued' };
      await assert.rejects(
        store.updateRun(run.id, patch),
        (e: unknown) => isPilotError(e) && e.code === 'conflict' && /no longer queued/.test(e.message),
      );
      const stored = await store.getRun(run.id);
      assert.equal(stored?.status, 'running');
      assert.equal(stored?.artifact, undefined);
    });
  });
}

// Every party at once, in any order: pushes, claims, the pipeline's reports, app removal, restarts.
// Whatever the ledger accepts or refuses, and whatever the store's own queue moves do, each run's
// statuses (read from the event feed) follow core/run-machine.ts and end once.
const APP = fc.constantFrom('web', 'api');
const action = fc.oneof(
  fc.record({ t: fc.constant('push' as const), app: APP, commit: fc.constantFrom('1', '2', '3'), branch: fc.constantFrom('main', 'dev') }),
  fc.record({ t: fc.constant('cli' as const), app: APP }),
  fc.record({ t: fc.constant('claim' as const) }),
  fc.record({
    t: fc.constant('report' as const),
    pick: fc.nat(),
    status: fc.option(fc.constantFrom('running', 'succeeded', 'failed', 'cancelled', 'superseded'), { nil: undefined }),
    step: fc.option(
      fc.record({
        name: fc.constantFrom('source', 'build', 'deploy'),
        status: fc.constantFrom('running', 'succeeded', 'failed', 'skipped'),
      }),
      {
        nil: undefined,
      },
    ),
    artifact: fc.option(fc.constantFrom('b', 'c'), { nil: undefined }),
  }),
  fc.record({ t: fc.constant('fail' as const), pick: fc.nat() }),
  fc.record({ t: fc.constant('remove' as const), app: APP }),
  fc.record({ t: fc.constant('recover' as const) }),
  fc.record({ t: fc.constant('interrupt' as const) }),
);

describe('run ledger and the store’s queue moves together (property)', () => {
  for (const [kind, open, numRuns] of [
    ['memory', () => ({ store: new MemoryStore() as Store, done: () => undefined }), 300],
    [
      'sqlite',
      () => {
        const dir = mkdtempSync(join(tmpdir(), 'pilot-ledger-prop-'));
        const store = new SqliteStore(join(dir, 'pilot.db'));
        return {
          store: store as Store,
          done: () => {
            store.close();
            rmSync(dir, { recursive: true, force: true });
          },
        };
      },
      60,
    ],
  ] as const) {
    it(`${kind}: every run moves only along the machine's edges and ends in exactly one end state`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(action, { maxLength: 40 }), async (actions) => {
          const { store, done } = open();
          try {
            const ledger = new RunLedger(store);
            for (const a of ['web', 'api']) await store.upsertApp(a, resolveAppConfig({}, a), 1);
            let delivery = 0;
            for (const [i, a] of actions.entries()) {
              const now = 100 + i;
              const runs = await store.listRuns({ limit: 1000 });
              const pick = (n: number) => runs[n % Math.max(1, runs.length)];
              try {
                switch (a.t) {
                  case 'push':
                    await ledger.enqueueWebhookRun({
                      app: a.app,
                      deliveryId: `d${delivery++}`,
                      commit: a.commit.repeat(40),
                      branch: a.branch,
                      message: 'm',
                      author: 'a',
                      now,
                    });
                    break;
                  case 'cli':
                    await ledger.startForegroundRun({ app: a.app, trigger: 'cli', commit: SHA, dirty: false, now });
                    break;
                  case 'claim':
                    await ledger.claimNextRun(now, now);
                    break;
                  case 'report': {
                    const r = pick(a.pick);
                    if (r)
                      await ledger.report(
                        r.id,
                        {
                          ...(a.status ? { status: a.status } : {}),
                          ...(a.step ? { steps: [a.step as StepRecord] } : {}),
                          ...(a.artifact ? { artifact: `sha256:${a.artifact.repeat(64)}` } : {}),
                        },
                        now,
                      );
                    break;
                  }
                  case 'fail': {
                    const r = pick(a.pick);
                    if (r) await ledger.fail(r.id, 'source: the app has no repository configured', now);
                    break;
                  }
                  case 'remove':
                    await store.removeApp(a.app, now);
                    break;
                  case 'recover':
                    await ledger.recoverInterruptedRuns(now);
                    break;
                  case 'interrupt':
                    await ledger.interruptForegroundRuns(now);
                    break;
                }
              } catch (err) {
                // Refusals are answers; anything else is a bug.
                assert.ok(
                  isPilotError(err) && ['run_finished', 'run_transition', 'run_not_found', 'app_removing'].includes(err.code),
                  String(err),
                );
              }
            }
            // Each run's history, from the feed: created in a start state, then legal moves only.
            const history = new Map<number, RunStatus[]>();
            for (const e of await store.readEvents({ after: 0, limit: 100_000 })) {
              const id = e.payload.run as number;
              if (e.kind === 'run.created') history.set(id, [e.payload.status as RunStatus]);
              if (e.kind === 'run.status') history.get(id)!.push(e.payload.status as RunStatus);
            }
            for (const r of await store.listRuns({ limit: 1000 })) {
              const h = history.get(r.id)!;
              assert.ok(h[0] === 'queued' || h[0] === 'running', `run ${r.id} created ${h[0]}`);
              for (let k = 1; k < h.length; k++) assert.ok(runTransitionAllowed(h[k - 1]!, h[k]!), `run ${r.id}: ${h.join(' → ')}`);
              assert.equal(h.at(-1), r.status, `run ${r.id}: the feed ends where the row is`);
              assert.ok(h.filter(isRunFinished).length <= 1, `run ${r.id} ended more than once: ${h.join(' → ')}`);
              assert.equal(r.finishedAt !== undefined, isRunFinished(r.status), `run ${r.id} ${r.status}: finishedAt ${r.finishedAt}`);
            }
          } finally {
            done();
          }
        }),
        { numRuns },
      );
    });
  }
});
