/**
 * The deploy process, end to end: source → build → package → publish → deploy. One
 * implementation, called by `pilot run` (in the CLI) and by the CD server's worker. It talks to the
 * control plane only through its API: it records a run (or continues a queued one), reports each
 * step, streams its log, publishes the artifact and asks for a revision, then follows the rollout
 * until it succeeds or fails.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatDuration } from '../core/duration.js';
import { PilotError, isPilotError } from '../core/errors.js';
import { sanitizeLine, secretMasker } from '../core/mask.js';
import type { ImageRef, RunRecord, StepName, StepRecord } from '../core/types.js';
import type { ApiClient } from '../control/api-client.js';
import { withNodeRuntime, defaultRuntimeCacheDir } from '../node-runtime/build-env.js';
import { provideNodeRuntime } from '../node-runtime/provide.js';
import { buildSteps, lockfileManager } from './build-plan.js';
import { packageManagerEnv, wantedPackageManager } from './package-manager.js';
import { packageManagerCacheDir, providePackageManager } from './provide-package-manager.js';
import { readUserSetup } from './user-setup.js';
import { formatArgv, mustSucceed, runCommand } from './exec.js';
import { followRollout } from './follow-rollout.js';
import { RunLog } from './run-log.js';
import { appDirOf, configFromCheckout, prepareSource, type RunSource } from './run-source.js';
import { buildEnv, readWorkspaceFacts } from './workspace-facts.js';

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

/** Perform the whole process. Throws PilotError on any failure (code `superseded` when a newer push won). */
export async function runPipeline(req: RunRequest, api: ApiClient): Promise<RunOutcome> {
  const sig = req.signal ? { signal: req.signal } : {};
  const source = await prepareSource(req.source, req.signal);
  // Packing and publishing need tar and undici; load them while the build runs, not before it.
  const later = Promise.all([import('../artifacts/pack.js'), import('../artifacts/client.js')]);
  later.catch(() => undefined);
  const run: RunRecord = req.source.kind === 'git'
    ? (await api.updateRun(req.source.runId, { status: 'running' })).run
    : (await api.createRun({ app: source.app, commit: source.commit, dirty: source.dirty, trigger: req.trigger })).run;
  const log = new RunLog(api, run.id, req.out);
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
    const result = await fn();
    durations[name] = mono() - t0;
    log.line(`    ${name} done in ${formatDuration(durations[name])}`);
    await setStep(name, 'succeeded');
    return result;
  };

  const workspace = await mkdtemp(join(tmpdir(), 'pilot-build-'));
  const appDir = appDirOf(workspace);
  try {
    log.line(`run #${run.id}${run.attempt > 1 ? ` (attempt ${run.attempt})` : ''}: app ${source.app}, commit ${source.commit}${source.dirty ? ' (dirty working tree)' : ''}`);
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
      if (dockerfile !== undefined) {
        log.line(`    nothing to build on this machine: ${dockerfile} builds the app${config.build?.length ? ' (pilot.yaml build: commands are not run; put them in the Dockerfile)' : ''}`);
        return undefined;
      }
      // The pinned runtime first: a version that cannot be had ends the run before anything is built.
      const pinned = config.runtime === 'process'
        ? await provideNodeRuntime({ app: config.name, commit: source.commit, appDir, configNode: config.node, api, cacheDir: req.runtimeCacheDir ?? defaultRuntimeCacheDir(), log: (l) => log.line(l), signal: req.signal })
        : undefined;
      if (pinned) log.line(`    node ${pinned.ref.version} (from ${pinned.ref.source}) builds the app: ${pinned.runtime.node}`);
      const facts = await readWorkspaceFacts(appDir);
      // Build secrets (pilot secrets set --build) and the user's npm set-up: masked from here on.
      const buildSecrets = (await api.call<{ secrets: Record<string, string> }>('GET', `/api/v1/runs/${run.id}/build-secrets`)).secrets;
      const cacheDir = req.runtimeCacheDir ?? defaultRuntimeCacheDir();
      await mkdir(cacheDir, { recursive: true });
      const setup = await readUserSetup({ neutralDir: cacheDir, appDir, extraEnv: { ...config.env, ...buildSecrets }, signal: req.signal });
      log.maskValues(secretMasker([...Object.values(buildSecrets), ...setup.secretValues]));
      log.line(`    npm set-up passed to the build: ${setup.summary}`);
      const secretNames = Object.keys(buildSecrets);
      if (secretNames.length > 0) log.line(`    build secrets: ${secretNames.sort().join(', ')} (build steps only, not the running app)`);
      const wanted = wantedPackageManager(facts);
      const provided = wanted && facts.hasPackageJson
        ? await providePackageManager({ wanted, cacheDir: packageManagerCacheDir(cacheDir), npmEnv: { ...setup.npmEnv, ...setup.env }, log: (l) => log.line(l), signal: req.signal })
        : undefined;
      const pm = provided?.pm ?? lockfileManager(facts);
      if (provided) log.line(`    ${pm.name} ${pm.version} (from ${wanted!.source}) installs the app${provided.via === 'cache' ? ' (cached on this machine)' : ` (fetched through ${provided.via})`}`);
      const plan = buildSteps(config.build, facts, pm);
      if (plan.length === 0) log.line('    nothing to build (no package.json, no build script, no build commands)');
      const hostEnv = buildEnv({ PATH: process.env.PATH, HOME: process.env.HOME }, { ...setup.env, ...packageManagerEnv(pm, facts.yarnLinker), ...config.env, ...buildSecrets });
      const nodeEnv = pinned ? withNodeRuntime(hostEnv, pinned.runtime) : hostEnv;
      const env = provided ? { ...nodeEnv, PATH: `${provided.binDir}:${nodeEnv['PATH']}` } : nodeEnv;
      for (const s of plan) {
        log.line(`--> ${s.name}: ${formatArgv(s.argv)}`);
        const result = await runCommand(s.argv, { cwd: appDir, env, timeoutMs: config.buildStepTimeoutMs, onLine: (_stream, line) => log.line(`    ${line}`), ...sig });
        try {
          mustSucceed(result, s.argv);
        } catch (e) {
          // A range (engines.yarn "^4") takes the newest match, which may rewrite an older lockfile's format.
          if (s.name === 'install' && provided && wanted && wanted.spec !== pm.version && isPilotError(e)) {
            throw new PilotError(e.code, e.message, { hint: `${pm.name} ${pm.version} is the newest match of ${wanted.source}; if the install wants to rewrite the lockfile, pin the version that wrote it in package.json: "packageManager": "${pm.name}@<version>".`, cause: e });
          }
          throw e;
        }
      }
      return pinned?.ref;
    });
    const image = docker && (await docker.imageSteps({ api, step, line: (l) => log.line(l), config, appDir, workspace, dockerfile, commit: source.commit, dirty: source.dirty, runId: run.id, signal: req.signal }));
    const tgz = join(workspace, 'artifact.tgz');
    const packed = image ? undefined : await step('package', 'package', async () => {
      const p = await (await later)[0].packDir(appDir, tgz);
      for (const w of p.warnings) log.line(`    warning: ${w}`);
      log.line(`    artifact ${p.digest} (${(p.size / 1024 / 1024).toFixed(2)} MB, ${p.files} files)`);
      return p;
    });
    if (packed) await step('publish', 'publish', async () => {
      const t0 = mono();
      const { ArtifactClient } = (await later)[1];
      const r = await new ArtifactClient(api.baseUrl, api.token).upload(tgz, packed.digest, { app: config.name, commit: source.commit });
      const secs = (mono() - t0) / 1000;
      log.line(r.uploaded
        ? `    uploaded ${(r.bytes / 1024 / 1024).toFixed(2)} MB (${(r.bytes / 1024 / 1024 / Math.max(secs, 0.001)).toFixed(0)} MB/s)`
        : '    already in the artifact repository: nothing to upload');
      await api.updateRun(run.id, { artifact: packed.digest });
    });
    const artifact = image ? image.archive ?? image.id : packed!.digest;
    const revision = await step('deploy', 'deploy', async () => {
      const d = await api.deploy(config.name, { artifact, commit: source.commit, dirty: source.dirty, config: input, runId: run.id, ...(image ? { image } : {}), ...(node ? { node } : {}) });
      await api.updateRun(run.id, { revision: d.revision.number, rolloutId: d.rollout.id });
      log.line(`    revision ${d.revision.number}, rollout #${d.rollout.id}`);
      await followRollout(api, config.name, d.rollout.id, {
        timeoutMs: req.deployTimeoutMs ?? config.deploy.readyTimeoutMs + config.deploy.stopTimeoutMs + 30_000,
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
    const raw = isPilotError(err) ? err : new PilotError('internal', String((err as Error)?.message ?? err), { cause: err });
    // The message may hold a failed step's output tail: mask build secrets there too (run record, terminal).
    const safe = log.maskText(raw.message);
    const pe = safe === raw.message ? raw : new PilotError(raw.code, safe, raw.hint ? { hint: raw.hint } : {}); // no cause: it holds the clear text
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
