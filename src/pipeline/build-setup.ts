/**
 * Everything the build steps need before the first one runs (issue 10): the app's build secrets,
 * the user's npm set-up, the package manager (provided when it is not npm), the plan and the
 * environment. Called by the runner once per build; effects at the edge, decisions in the pure
 * modules (build-plan.ts, package-manager.ts, node-runtime/build-env.ts).
 *
 *   GET /runs/:id/build-secrets ─┐
 *   host npm config (user-setup) ├─► masker on the run log ─► package manager (provide) ─► plan + env
 *   workspace facts ─────────────┘
 */
import { mkdir } from 'node:fs/promises';
import type { AppConfig } from '../core/app-config.js';
import { isPilotError, restate, pipelineHints } from '../core/errors.js';
import { secretMasker } from '../core/mask.js';
import type { ApiClient } from '../api/client.js';
import { withNodeRuntime } from '../node-runtime/build-env.js';
import type { UnpackedRuntime } from '../node-runtime/runtime-package.js';
import { buildSteps, lockfileManager, type BuildStep, type WorkspaceFacts } from '../workspace/build-plan.js';
import { packageManagerEnv, wantedPackageManager, type PackageManager, type WantedPackageManager } from '../workspace/package-manager.js';
import { packageManagerCacheDir, providePackageManager, type ProvidedPackageManager } from './provide-package-manager.js';
import type { RunLog } from './run-log.js';
import { readUserSetup } from './user-setup.js';
import { buildEnv, readWorkspaceFacts } from '../workspace/facts.js';

export interface PreparedBuild {
  readonly facts: WorkspaceFacts;
  readonly plan: readonly BuildStep[];
  /** The whole environment of every build step. */
  readonly env: Record<string, string>;
  readonly pm: PackageManager;
  readonly wanted: WantedPackageManager | undefined;
  readonly provided: ProvidedPackageManager | undefined;
  /** For hints: the app's name and the `${VAR}`s of its .npmrc the build does not have. */
  readonly app: string;
  readonly missingVars: readonly string[];
}

/** Read the workspace and the user's set-up, fetch the build secrets and the package manager; from here on the log is masked. */
export async function prepareBuild(o: {
  readonly api: ApiClient;
  readonly runId: number;
  readonly appDir: string;
  readonly config: AppConfig;
  readonly pinned: UnpackedRuntime | undefined;
  /** The bin folder of the npm paired with the pinned node (node-runtime/provide-npm.ts), if any. */
  readonly pairedNpmBinDir?: string | undefined;
  /** This machine's runtime cache (package managers live beside the runtimes). */
  readonly cacheDir: string;
  readonly log: RunLog;
  readonly signal?: AbortSignal | undefined;
  /** user-setup.ts `locateNpmConfig`, started by the caller earlier. */
  readonly located?: Promise<Record<string, string>> | undefined;
}): Promise<PreparedBuild> {
  const { log } = o;
  const facts = await readWorkspaceFacts(o.appDir);
  const secrets = (await o.api.call<{ secrets: Record<string, string> }>('GET', `/api/v1/runs/${o.runId}/build-secrets`)).secrets;
  await mkdir(o.cacheDir, { recursive: true });
  const setup = await readUserSetup({
    neutralDir: o.cacheDir,
    appDir: o.appDir,
    extraEnv: { ...o.config.env, ...secrets },
    signal: o.signal,
    located: o.located,
  });
  log.maskValues(secretMasker([...Object.values(secrets), ...setup.secretValues]));
  log.line(`    npm set-up passed to the build: ${setup.summary}`);
  const names = Object.keys(secrets).sort();
  if (names.length > 0) log.line(`    build secrets: ${names.join(', ')} (build steps only, not the running app)`);
  for (const v of setup.missingVars)
    log.line(
      `    warning: the app's .npmrc uses \${${v}}, which the build does not have (set it: pilot secrets set ${o.config.name} ${v} --build)`,
    );

  const wanted = facts.hasPackageJson ? wantedPackageManager(facts) : undefined;
  const provided =
    wanted &&
    (await providePackageManager({
      wanted,
      cacheDir: packageManagerCacheDir(o.cacheDir),
      npmEnv: { ...setup.npmEnv, ...setup.env },
      log: (l) => log.line(l),
      signal: o.signal,
    }));
  const pm = provided?.pm ?? lockfileManager(facts);
  if (provided)
    log.line(
      `    ${pm.name} ${pm.version} (from ${wanted!.source}) installs the app${provided.via === 'cache' ? ' (cached on this machine)' : ` (fetched through ${provided.via})`}`,
    );

  // Precedence: the user's set-up, what the manager needs, pilot.yaml env, then the build secrets.
  const base = buildEnv(
    { PATH: process.env.PATH, HOME: process.env.HOME },
    { ...setup.env, ...packageManagerEnv(pm, facts.yarnLinker), ...o.config.env, ...secrets },
  );
  const withNode = o.pinned ? withNodeRuntime(base, o.pinned, o.pairedNpmBinDir) : base;
  const env = provided ? { ...withNode, PATH: `${provided.binDir}:${withNode['PATH']}` } : withNode;
  return {
    facts,
    plan: buildSteps(o.config.build, facts, pm),
    env,
    pm,
    wanted,
    provided,
    app: o.config.name,
    missingVars: setup.missingVars,
  };
}

/**
 * A failed install gets a hint when the cause is likely ours to name: the app's .npmrc names a
 * variable the build lacks (a build secret not set), or a manager chosen by a range (engines.yarn "^4") gets a hint: the newest match
 * may want to rewrite an older lockfile's format, and only a pinned version avoids that.
 */
export function explainStepFailure(e: unknown, step: BuildStep, b: PreparedBuild): unknown {
  if (step.name !== 'install' || !isPilotError(e)) return e;
  if (b.missingVars.length > 0) {
    const v = b.missingVars[0]!;
    return restate(e, { hint: pipelineHints.npmrcVariableMissing({ v, app: b.app }), cause: e });
  }
  if (!b.provided || !b.wanted || b.wanted.spec === b.pm.version) return e;
  return restate(e, {
    hint: pipelineHints.managerRangeRewrite({ name: b.pm.name, version: b.pm.version, source: b.wanted.source }),
    cause: e,
  });
}
