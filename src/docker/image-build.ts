/**
 * `docker build` through the Engine API for an app folder: with the app's own Dockerfile, or with
 * the one Pilot generates (dockerfile.ts) on top of `pilot/node:<version>`. The build log goes to
 * `onLine` as it arrives; a failed build is build_failed with the log's tail in the message.
 */
import { lstat, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type PilotError, isPilotError, fail } from '../core/errors.js';
import { resolveRunCommand } from '../core/run-command.js';
import { readPackageJson, stringScripts } from '../workspace/facts.js';
import { baseImageTag } from './base-image.js';
import { buildNpmSettings } from './build-npm.js';
import { buildContext, listContext, packContext, readRegularFile, resolveDockerfile, type ContextEntry } from './context.js';
import { BUILD_TOOLS_DIR, GENERATED_DOCKERFILE, GENERATED_DOCKERIGNORE, generateDockerfile } from './dockerfile.js';
import { requireEngine, type Engine } from './engine.js';
import { followBuild } from './progress.js';

/**
 * The base image of generated Dockerfiles: PILOT_NODE_BASE_IMAGE on the build machine, else
 * pilot/node:<the Node.js version that ran the build>. The app's dependencies were installed by
 * that Node (native addons are built for its ABI), so the image runs the same version by default.
 */
export function defaultBaseImage(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.PILOT_NODE_BASE_IMAGE?.trim();
  return configured ? configured : baseImageTag(process.versions.node);
}

/** The base image is on the engine, else base_image_missing with the command that makes it. */
export async function requireBaseImage(engine: Engine, base: string): Promise<void> {
  try {
    await engine.getImage(base).inspect();
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 404) throw engineError(err, `inspecting the base image ${base}`);
    throw fail.baseImageMissing({ base, node: baseImageTag(process.versions.node) });
  }
}

/** The command a generated Dockerfile starts: pilot.yaml `run`, the Procfile `web:` line, or package.json's start. */
export async function generatedCommand(appDir: string, run: readonly string[] | undefined): Promise<readonly string[]> {
  const procfile = await readRegularFile(appDir, 'Procfile');
  const pkg = await readPackageJson(appDir);
  return resolveRunCommand(run, procfile, pkg && stringScripts(pkg));
}

/** Throws what generateDockerfile would (invalid_config: the base has no shell) before anything is built. */
export async function checkGeneratedCommand(appDir: string, run: readonly string[] | undefined, baseImage: string): Promise<void> {
  generateDockerfile({ baseImage, command: await generatedCommand(appDir, run), entries: [] });
}

/** The app's own Dockerfile (relative path), or undefined when Pilot generates one. */
export async function ownDockerfile(appDir: string, configured: string | undefined): Promise<string | undefined> {
  if (configured !== undefined) return resolveDockerfile(appDir, configured);
  try {
    if ((await lstat(join(appDir, 'Dockerfile'))).isFile()) return 'Dockerfile';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return undefined;
}

export interface ImageBuildRequest {
  readonly engine: Engine;
  readonly appDir: string;
  /** Relative path of the app's Dockerfile; undefined = generate one. */
  readonly dockerfile: string | undefined;
  /** pilot.yaml `run` (generated Dockerfiles only). */
  readonly run: readonly string[] | undefined;
  /** pilot.yaml `build` (generated Dockerfiles only; run in the build stage). */
  readonly build?: readonly (readonly string[])[] | undefined;
  /** pilot.yaml `env`: the build commands of a generated Dockerfile see it (build arguments of the build stage). */
  readonly env?: Readonly<Record<string, string>> | undefined;
  /** Container paths of the app's volumes (generated Dockerfiles create them owned by the app's user). */
  readonly volumePaths?: readonly string[] | undefined;
  /** Local tag, e.g. pilot/shop:0123456789ab. */
  readonly tag: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly baseImage?: string;
  readonly signal?: AbortSignal;
  readonly onLine?: (line: string) => void;
}

export interface BuiltImage {
  /** sha256:<config digest>: the image ID. */
  readonly id: string;
  readonly tag: string;
  /** The generated Dockerfile, when there was none in the app. */
  readonly generated: string | undefined;
  readonly size: number;
}

/** Build the image; returns its ID. */
export async function buildAppImage(req: ImageBuildRequest): Promise<BuiltImage> {
  await requireEngine(req.engine);
  if (req.dockerfile !== undefined) {
    return runBuild(req, (await buildContext(req.appDir, { dockerfile: req.dockerfile })).stream, req.dockerfile, undefined);
  }
  // The build tools folder staged in the app folder (a run's own workspace) is removed whatever happens.
  let staged = false;
  try {
    const { context, generated } = await generatedContext(req, () => (staged = true));
    return await runBuild(req, context, GENERATED_DOCKERFILE, generated);
  } finally {
    if (staged) await rm(join(req.appDir, BUILD_TOOLS_DIR), { recursive: true, force: true });
  }
}

/** The generated Dockerfile and its context; `onStaged` once the build tools folder is in the app folder. */
async function generatedContext(
  req: ImageBuildRequest,
  onStaged: () => void,
): Promise<{ context: NodeJS.ReadableStream; generated: string }> {
  const base = req.baseImage ?? defaultBaseImage();
  await requireBaseImage(req.engine, base);
  const procfile = await readRegularFile(req.appDir, 'Procfile');
  const pkg = await readPackageJson(req.appDir);
  const scripts = pkg && stringScripts(pkg);
  const command = resolveRunCommand(req.run, procfile, scripts);
  // The image installs its own dependencies: a node_modules here (the author's) is never sent.
  const entries = (await listContext(req.appDir)).filter((e) => e.path !== 'node_modules' && !e.path.startsWith('node_modules/'));
  const npm = await buildNpmSettings();
  const tools = await stageBuildTools(join(req.appDir, BUILD_TOOLS_DIR), npm.ca);
  onStaged();
  const generated = generateDockerfile({
    baseImage: base,
    command,
    entries: [...entries, ...tools],
    build: req.build,
    scripts,
    volumePaths: req.volumePaths,
    buildTools: tools.some((t) => t.path.endsWith('/sh')),
    registry: npm.registry,
    ca: npm.ca !== undefined,
    packageManager: typeof pkg?.['packageManager'] === 'string' ? pkg['packageManager'] : undefined,
    app: req.labels['dev.pilot.app'],
    buildArgs: Object.keys(req.env ?? {}),
  });
  const context = packContext(
    req.appDir,
    [...entries, ...tools],
    [
      { path: '.dockerignore', content: GENERATED_DOCKERIGNORE },
      { path: GENERATED_DOCKERFILE, content: generated },
    ],
  );
  return { context, generated };
}

async function runBuild(
  req: ImageBuildRequest,
  context: NodeJS.ReadableStream,
  dockerfile: string,
  generated: string | undefined,
): Promise<BuiltImage> {
  const { engine } = req;
  let stream: NodeJS.ReadableStream;
  try {
    stream = await engine.buildImage(context, {
      t: req.tag,
      dockerfile,
      labels: { ...req.labels },
      rm: true,
      forcerm: true,
      // The engine runs with --bridge=none: RUN steps (npm ci) reach the registry on the host's network.
      networkmode: 'host',
      ...(generated !== undefined && req.env && Object.keys(req.env).length > 0 ? { buildargs: { ...req.env } } : {}),
      ...(req.signal ? { abortSignal: req.signal } : {}),
    });
  } catch (err) {
    throw engineError(err, 'docker build');
  }
  let id: string;
  try {
    id = await followBuild(engine, stream, req.onLine);
  } catch (err) {
    if (req.signal?.aborted) throw fail.dockerBuildCancelled();
    if (isPilotError(err) && err.code === 'build_failed') {
      const tail = ((err.details as { tail?: string[] } | undefined)?.tail ?? []).slice(-20);
      throw fail.buildFailed({ message: err.message, tail }, { details: err.details });
    }
    throw engineError(err, 'docker build');
  }
  const info = await engine.getImage(id).inspect();
  return { id, tag: req.tag, generated, size: info.Size };
}

/**
 * Stage the build machine's `sh` and `env` for the build stage of a generated Dockerfile (npm runs
 * scripts with /bin/sh; bin scripts start with `#!/usr/bin/env node`), and its npm CA bundle. The
 * programs link only libc, which the base has (made from this machine's node and its libraries).
 * Real files, not in-memory tar entries: a large in-memory entry stalls node-tar's pack stream.
 * Without them here, builds whose install runs no scripts still work.
 */
async function stageBuildTools(dir: string, ca: Buffer | undefined): Promise<ContextEntry[]> {
  try {
    await mkdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    throw fail.buildToolsNameTaken({ buildToolsDir: BUILD_TOOLS_DIR });
  }
  try {
    return await writeBuildTools(dir, ca);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function writeBuildTools(dir: string, ca: Buffer | undefined): Promise<ContextEntry[]> {
  const out: ContextEntry[] = [{ path: BUILD_TOOLS_DIR, kind: 'dir' }];
  const sh = await readFile('/bin/sh').catch(() => undefined);
  const env = await readFile('/usr/bin/env').catch(() => undefined);
  if (sh && env) {
    await writeFile(join(dir, 'sh'), sh, { mode: 0o755 });
    await writeFile(join(dir, 'env'), env, { mode: 0o755 });
    out.push({ path: `${BUILD_TOOLS_DIR}/env`, kind: 'file' }, { path: `${BUILD_TOOLS_DIR}/sh`, kind: 'file' });
  }
  if (ca) {
    await writeFile(join(dir, 'ca.crt'), ca);
    out.push({ path: `${BUILD_TOOLS_DIR}/ca.crt`, kind: 'file' });
  }
  return out;
}

/** An Engine API failure that is not the build's own: the engine's words, which part of Pilot asked. */
export function engineError(err: unknown, what: string): PilotError {
  if (isPilotError(err)) return err;
  const e = err as { statusCode?: number; json?: { message?: string }; message?: string; code?: string };
  const msg = e.json?.message ?? e.message ?? String(err);
  if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') return fail.engineNotAnswering({ what, msg });
  return fail.engineRefused({ what, msg });
}
