/**
 * The deploy process, end to end: source → build → package → publish → deploy. One
 * implementation, called by `pilot run` (in the CLI) and by the CD server's worker. It talks to the
 * control plane only through its API: it records a run (or continues a queued one), reports each
 * step, streams its log, publishes the artifact and asks for a revision, then follows the rollout
 * until it succeeds or fails.
 */
import { rolloutBudgetMs } from '../core/strategy.js';
import { access, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatDuration, parseEnvDuration } from '../core/duration.js';
import { isPilotError, fail, restate } from '../core/errors.js';
import { sanitizeLine } from '../core/mask.js';
import { missingStartCommand, resolveReleaseCommand } from '../core/run-command.js';
import type { ImageRef, RunRecord, StepName, StepRecord } from '../core/types.js';
import type { ApiClient } from '../api/client.js';
import { defaultRuntimeCacheDir } from '../node-runtime/build-env.js';
import { provideNodeRuntime } from '../node-runtime/provide.js';
import { stepVerb } from './build-cache-key.js';
import { cacheKeep, defaultBuildCacheDir } from './build-cache.js';
import { explainStepFailure, prepareBuild } from './build-setup.js';
import { isBerry } from '../workspace/package-manager.js';
import { formatArgv, mustSucceed, runCommand } from '../os/exec.js';
import { diskFullError, diskLowThreshold, freeBytesSync } from '../disk/disk.js';
import { followRollout } from './follow-rollout.js';
import { locateNpmConfig } from './user-setup.js';
import { installWithCache, pruneDevDependencies, type RunStep } from './install-cache.js';
import { RunLog } from './run-log.js';
import { SilenceTimer, elapsedText } from '../os/silence.js';
import { appDirOf, configFromCheckout, prepareSource, type RunSource } from './run-source.js';
import { readWorkspaceFacts } from '../workspace/facts.js';

/** A step's output line that says the disk (or the quota) is full. */
const NO_SPACE = /\bENOSPC\b|no space left on device|\bEDQUOT\b|disk quota exceeded/i;

export interface RunRequest {
  readonly source: RunSource;
  readonly trigger: 'cli' | 'webhook';
  readonly signal?: AbortSignal;
  /** Where progress lines go (the terminal); the run log on the server gets them too. */
  readonly out: (line: string) => void;
  /** Deploy deadline override; default from pilot.yaml deploy.ready_timeout (+ slack). */
  readonly deployTimeoutMs?: number;
  /** This machine's Node.js runtime cache (default: $PILOT_RUNTIME_CACHE, else $PILOT_HOME/runtimes). */
  readonly runtimeCacheDir?: string;
  /** `pilot run --node VERSION`: the Node.js version or range to use instead of the app's (a trial). */
  readonly nodeOverride?: string | undefined;
  /** This machine's build cache (default: $PILOT_BUILD_CACHE, else $PILOT_HOME/build-cache). */
  readonly buildCacheDir?: string;
  /** `pilot run --no-cache`: install from scratch (the download cache still serves), then save a fresh entry. */
  readonly noCache?: boolean;
}

export interface RunOutcome {
  readonly runId: number;
  readonly app: string;
  readonly commit: string;
  readonly artifact: string;
  readonly revision: number;
  /** runtime docker: the image deployed. */
  readonly image?: ImageRef | undefined;
  readonly durations: Readonly<Record<StepName, number>>;
}

const mono = (): number => performance.now();
/** A build command silent this long gets a `still installing… 2m10s` line, and again every as long (PILOT_SILENCE_NOTICE, default 15s). */
const silenceMs = parseEnvDuration(process.env.PILOT_SILENCE_NOTICE) || 15_000;
/** 3.1 MB, 24 KB. */
const humanSize = (n: number): string =>
  n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`;
/** The verb of a step's silence notice: `still deploying… 45s`. */
const STEP_VERBS: Readonly<Record<StepName, string>> = {
  source: 'checking out',
  build: 'building',
  package: 'packaging',
  publish: 'publishing',
  deploy: 'deploying',
};

/** Perform the whole process. Throws PilotError on any failure (code `superseded` when a newer push won). */
export async function runPipeline(req: RunRequest, api: ApiClient): Promise<RunOutcome> {
  const sig = req.signal ? { signal: req.signal } : {};
  const source = await prepareSource(req.source, req.signal);
  // Packing and publishing need tar and undici; load them while the build runs, not before it.
  const later = Promise.all([import('../artifacts/pack.js'), import('../artifacts/client.js')]);
  later.catch(() => undefined);
  const run: RunRecord =
    req.source.kind === 'git'
      ? (await api.updateRun(req.source.runId, { status: 'running' })).run
      : (await api.createRun({ app: source.app, commit: source.commit, dirty: source.dirty, trigger: req.trigger })).run;
  // Steps that are not commands (a runtime download, a cache restore, a docker build, an upload, a
  // rollout) get notices from here; commands have their own (runStep), during which this one pauses.
  let stepSilence: SilenceTimer | undefined;
  const log = new RunLog(api, run.id, (l) => {
    stepSilence?.poke();
    req.out(l);
  });
  const steps: StepRecord[] = run.steps.map((s) => ({ ...s }));
  const durations = { source: 0, build: 0, package: 0, publish: 0, deploy: 0 };
  let current: StepName = 'source';
  const setStep = async (name: StepName, status: StepRecord['status'], error?: string): Promise<void> => {
    const i = steps.findIndex((s) => s.name === name);
    steps[i] = {
      ...steps[i]!,
      status,
      ...(status === 'running' ? { startedAt: Date.now() } : { finishedAt: Date.now() }),
      ...(error === undefined ? {} : { error: error.slice(0, 8000) }),
    };
    await api.updateRun(run.id, { steps });
  };
  const step = async <T>(name: StepName, title: string, fn: () => Promise<T>): Promise<T> => {
    current = name;
    log.line(`==> ${title}`);
    await setStep(name, 'running');
    const t0 = mono();
    stepSilence = new SilenceTimer(silenceMs, (ms) => log.line(`    still ${STEP_VERBS[name]}… ${elapsedText(ms)}`));
    let result: T;
    try {
      result = await fn();
    } finally {
      stepSilence.stop();
      stepSilence = undefined;
    }
    durations[name] = mono() - t0;
    log.line(`    ${name} done in ${formatDuration(durations[name])}`);
    await setStep(name, 'succeeded');
    return result;
  };

  const workspace = await mkdtemp(join(tmpdir(), 'pilot-build-'));
  const appDir = appDirOf(workspace);
  try {
    log.line(
      `run #${run.id}${run.attempt > 1 ? ` (attempt ${run.attempt})` : ''}: app ${source.app}, commit ${source.commit}${source.dirty ? ' (dirty working tree)' : ''}`,
    );
    const { config, input } = await step('source', `source: ${source.commit.slice(0, 12)}`, async () => {
      const { files, message } = await source.checkout(appDir, req.signal, (l) => log.line(`    ${sanitizeLine(l)}`));
      log.line(`    ${JSON.stringify(sanitizeLine(message.split('\n')[0] ?? '', 200))}: ${files} files checked out in a clean workspace`);
      return source.config ?? (await configFromCheckout(source.app, appDir));
    });
    // runtime docker: image-steps.ts does package and publish; an app's own Dockerfile does the build.
    const docker = config.runtime === 'docker' ? await import('./image-steps.js') : undefined;
    let dockerfile: string | undefined;
    const node = await step('build', 'build', async () => {
      dockerfile = docker && (await docker.ownDockerfile(appDir, config.dockerfile));
      // Engine, base image, registry: checked before anything is installed, not after.
      if (docker) await docker.preflight({ api, config, appDir, dockerfile, line: (l) => log.line(l), signal: req.signal });
      if (dockerfile !== undefined) {
        log.line(
          `    nothing to build on this machine: ${dockerfile} builds the app${config.build?.length ? ' (pilot.yaml build: commands are not run; put them in the Dockerfile)' : ''}`,
        );
        return undefined;
      }
      if (docker) {
        log.line(
          '    nothing to build on this machine: the generated Dockerfile installs the dependencies and builds the app in the image',
        );
        return undefined;
      }
      const early = await readWorkspaceFacts(appDir);
      // Fail in the build, not with crashing instances at deploy, when nothing says how to start
      // the app: before the install when no build can write a server.js, else after the build.
      const checkStartCommand = async (): Promise<void> => {
        if (config.runtime !== 'process' || !early.hasPackageJson) return;
        const procfile = await readFile(join(appDir, 'Procfile'), 'utf8').catch(() => undefined);
        const serverJs = await access(join(appDir, 'server.js')).then(
          () => true,
          () => false,
        );
        const missing = missingStartCommand(config.run, procfile, early.scripts, serverJs);
        if (missing) throw missing;
      };
      if (early.scripts['build'] === undefined && !config.build?.length) await checkStartCommand();
      // Where the host's npm keeps its configuration (a few hundred ms of npm start-up), asked beside the runtime's provisioning.
      await mkdir(req.runtimeCacheDir ?? defaultRuntimeCacheDir(), { recursive: true });
      const located = locateNpmConfig({ neutralDir: req.runtimeCacheDir ?? defaultRuntimeCacheDir(), signal: req.signal });
      located.catch(() => undefined); // awaited by prepareBuild; a run that ends earlier leaves no unhandled rejection
      // The pinned runtime first: a version that cannot be had ends the run before anything is built.
      const pinned =
        config.runtime === 'process'
          ? await provideNodeRuntime({
              app: config.name,
              commit: source.commit,
              appDir,
              configNode: config.node,
              api,
              cacheDir: req.runtimeCacheDir ?? defaultRuntimeCacheDir(),
              log: (l) => log.line(l),
              signal: req.signal,
              override: req.nodeOverride,
            })
          : undefined;
      if (req.nodeOverride !== undefined && config.runtime !== 'process')
        log.line(`    warning: --node ${req.nodeOverride} is ignored: runtime ${config.runtime} gets Node.js from its image`);
      if (pinned) log.line(`    node ${pinned.ref.version} (from ${pinned.ref.source}) builds the app: ${pinned.runtime.node}`);
      if (pinned)
        log.line(
          pinned.npm
            ? `    npm ${pinned.npm.version} (paired with node ${pinned.ref.version}) installs and starts it: ${pinned.npm.binDir}`
            : "    npm: this machine's own (none paired)",
        );
      // Build secrets, the user's npm set-up and the package manager (build-setup.ts); the log is masked from here on.
      const prepared = await prepareBuild({
        api,
        runId: run.id,
        appDir,
        config,
        pinned: pinned?.runtime,
        pairedNpmBinDir: pinned?.npm?.binDir,
        cacheDir: req.runtimeCacheDir ?? defaultRuntimeCacheDir(),
        log,
        signal: req.signal,
        located,
      });
      const { plan } = prepared;
      if (plan.length === 0) log.line('    nothing to build (no package.json, no build script, no build commands)');
      const { facts, pm } = prepared;
      let env: Readonly<Record<string, string>> = prepared.env;
      const runStep: RunStep = async (name, argv, stepEnv) => {
        log.line(`--> ${name}: ${formatArgv(argv)}`);
        const verb = stepVerb(name);
        const outer = stepSilence;
        outer?.pause();
        const result = await runCommand(argv, {
          cwd: appDir,
          env: stepEnv,
          timeoutMs: config.buildStepTimeoutMs,
          onLine: (_stream, line) => log.line(`    ${line}`),
          silenceMs,
          onSilence: (ms) => log.line(`    still ${verb}… ${elapsedText(ms)}`),
          ...sig,
        }).finally(() => outer?.resume());
        try {
          mustSucceed(result, argv);
        } catch (e) {
          // Out of disk (npm's, a compiler's ENOSPC): said as every other full disk is, naming the
          // fullest of the filesystems the step writes to; its own lines are in the run's log above.
          // Only when that filesystem is low for real: ENOSPC also means "too many inotify watches".
          if (result.tail.some((l) => NO_SPACE.test(l))) {
            const dirs = [appDir, req.buildCacheDir ?? defaultBuildCacheDir(), req.runtimeCacheDir ?? defaultRuntimeCacheDir()];
            const [fullest] = dirs.map((d) => ({ d, free: freeBytesSync(d) ?? Infinity })).sort((a, b) => a.free - b.free);
            if (fullest!.free < diskLowThreshold())
              throw diskFullError({ code: 'ENOSPC' }, `build step \`${name}\` cannot write`, fullest!.d);
          }
          throw explainStepFailure(e, { name, argv }, prepared);
        }
        log.line(`    ${name} took ${formatDuration(result.durationMs)}`);
      };
      // The manager that installs (package-manager.ts), not only the lockfile's: packageManager may differ.
      const manager = pm.name;
      let managerVersion: string | undefined = prepared.provided ? pm.version : undefined;
      let cacheEntry: string | undefined;
      for (const s of plan) {
        // yarn 2+ keeps its install outside node_modules (.pnp.cjs, .yarn/cache, install state): the
        // node_modules cache would restore an incomplete install, so berry apps install every time.
        if (s.name === 'install' && config.buildCache && !isBerry(pm)) {
          const cache = { root: req.buildCacheDir ?? defaultBuildCacheDir(), app: config.name };
          const r = await installWithCache({
            cache,
            appDir,
            workspace,
            manager,
            installArgv: s.argv,
            env,
            bypass: req.noCache === true,
            keep: cacheKeep(),
            line: (l) => log.line(l),
            runStep,
            signal: req.signal,
          });
          env = r.env;
          cacheEntry = r.entry;
          managerVersion = r.inputs?.managerVersion ?? managerVersion;
        } else {
          if (s.name === 'install' && config.buildCache)
            log.line(`    build cache: not used for yarn ${pm.version} (its install lives outside node_modules)`);
          await runStep(s.name, s.argv, env);
        }
      }
      if (facts.hasPackageJson && config.pruneDevDependencies) {
        await pruneDevDependencies({ appDir, manager, managerVersion, env, line: (l) => log.line(l), runStep, entry: cacheEntry });
      }
      await checkStartCommand();
      return pinned?.ref;
    });
    const image =
      docker &&
      (await docker.imageSteps({
        api,
        step,
        line: (l) => log.line(l),
        config,
        appDir,
        workspace,
        dockerfile,
        commit: source.commit,
        dirty: source.dirty,
        runId: run.id,
        signal: req.signal,
      }));
    const tgz = join(workspace, 'artifact.tgz');
    const packed = image
      ? undefined
      : await step('package', 'package', async () => {
          const p = await (await later)[0].packDir(appDir, tgz);
          for (const w of p.warnings) log.line(`    warning: ${w}`);
          log.line(`    artifact: ${humanSize(p.size)}, ${p.files} files (${p.digest})`);
          return p;
        });
    if (packed)
      await step('publish', 'publish', async () => {
        const t0 = mono();
        const { ArtifactClient } = (await later)[1];
        const r = await new ArtifactClient(api.servers, api.token).upload(tgz, packed.digest, { app: config.name, commit: source.commit });
        const secs = (mono() - t0) / 1000;
        log.line(
          r.uploaded
            ? `    uploaded ${(r.bytes / 1024 / 1024).toFixed(2)} MB (${(r.bytes / 1024 / 1024 / Math.max(secs, 0.001)).toFixed(0)} MB/s)`
            : '    already in the artifact repository: nothing to upload',
        );
        await api.updateRun(run.id, { artifact: packed.digest });
      });
    const artifact = image ? (image.archive ?? image.id) : packed!.digest;
    const revision = await step('deploy', 'deploy', async () => {
      // The Procfile `release:` line becomes the revision's release command (pilot.yaml `release` wins).
      const procfileRelease =
        input.release === undefined && config.runtime === 'process'
          ? resolveReleaseCommand(undefined, await readFile(join(appDir, 'Procfile'), 'utf8').catch(() => undefined))
          : undefined;
      const release = procfileRelease ?? config.release;
      if (release)
        log.line(
          `    release phase: ${formatArgv(release)} (${procfileRelease ? 'Procfile release:' : 'pilot.yaml release'}), once, before traffic moves`,
        );
      const sent = procfileRelease ? { ...input, release: [...procfileRelease] } : input;
      const d = await api.deploy(config.name, {
        artifact,
        commit: source.commit,
        dirty: source.dirty,
        config: sent,
        runId: run.id,
        ...(image ? { image } : {}),
        ...(node ? { node } : {}),
      });
      await api.updateRun(run.id, { revision: d.revision.number, rolloutId: d.rollout.id });
      log.line(`    revision ${d.revision.number}, rollout #${d.rollout.id}`);
      for (const n of d.notes ?? []) log.line(`    ${n}`);
      await followRollout(api, config.name, d.rollout.id, {
        timeoutMs: req.deployTimeoutMs ?? rolloutBudgetMs(config),
        out: (l) => log.line(`    ${l}`),
        ...sig,
      });
      return d.revision.number;
    });
    log.line(`==> revision ${revision} of ${config.name} is live (run #${run.id})`);
    await log.flush();
    await api.updateRun(run.id, { status: 'succeeded' });
    return { runId: run.id, app: config.name, commit: source.commit, artifact, revision, image, durations };
  } catch (err) {
    const raw = isPilotError(err) ? err : fail.unexpected({ message: String((err as Error)?.message ?? err) }, { cause: err });
    // The message may hold a failed step's output tail: mask build secrets there too (run record, terminal).
    const safe = log.maskText(raw.message);
    const pe = safe === raw.message ? raw : restate(raw, { message: safe }); // no cause: it holds the clear text
    const status = pe.code === 'superseded' ? 'superseded' : req.signal?.aborted ? 'cancelled' : 'failed';
    log.line(pe.code === 'superseded' ? `=== ${current} skipped: ${pe.message}` : `!!! ${current} failed: ${pe.message}`);
    if (pe.hint && pe.code !== 'superseded') log.line(`    hint: ${pe.hint}`);
    await log.flush().catch(() => undefined);
    await setStep(current, pe.code === 'superseded' ? 'skipped' : 'failed', pe.message).catch(() => undefined);
    // A webhook run cut short by a server shutdown stays `running`: the restart retries it.
    if (!(req.trigger === 'webhook' && req.signal?.aborted)) {
      await api.updateRun(run.id, { status, error: `${current}: ${pe.message}`.slice(0, 8000) }).catch(() => undefined);
    }
    throw pe;
  } finally {
    log.close();
    await rm(workspace, { recursive: true, force: true });
  }
}
