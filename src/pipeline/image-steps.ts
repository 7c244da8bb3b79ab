/**
 * The runner's steps for `runtime: docker` (runner.ts calls in here; the process runtime never
 * loads this file):
 *
 *   build    nothing on this machine: the app's own Dockerfile, or the generated one (a build
 *            stage that installs by lockfile and runs the build commands), builds the app
 *   package  docker build through the Engine API, log streamed line by line → image ID
 *   publish  a registry configured (`pilot registry set`): tag <address>/<app>:<commit12>, push,
 *            image.ref = <address>/<app>@<manifest digest>;
 *            none: docker save → tarball → artifact repository (HEAD first), image.archive = its digest
 *
 * The image is named by digest everywhere after this: run record (artifact), revision (image).
 */
import { join } from 'node:path';
import type { AppConfig } from '../core/app-config.js';
import { fail } from '../core/errors.js';
import { secretMasker, sanitizeLine } from '../core/mask.js';
import { parseRegistryUrl } from '../core/registry-url.js';
import type { ImageRef, StepName } from '../core/types.js';
import type { ApiClient } from '../api/client.js';
import type { RegistryView } from '../api/wire.js';
import { connectEngine, requireEngine, type Engine } from '../docker/engine.js';
import { buildAppImage, checkGeneratedCommand, defaultBaseImage, ownDockerfile, requireBaseImage } from '../docker/image-build.js';
import { pushImage, saveImage, type RegistryTarget } from '../docker/publish.js';

export { ownDockerfile };

type Step = <T>(name: StepName, title: string, fn: () => Promise<T>) => Promise<T>;

export interface ImageStepsRequest {
  readonly api: ApiClient;
  readonly step: Step;
  readonly line: (text: string) => void;
  readonly config: AppConfig;
  readonly appDir: string;
  /** The run's temp folder (the image tarball goes there). */
  readonly workspace: string;
  /** From ownDockerfile(); undefined = generated. */
  readonly dockerfile: string | undefined;
  readonly commit: string;
  readonly dirty: boolean;
  readonly runId: number;
  readonly signal?: AbortSignal | undefined;
  readonly engine?: Engine;
}

/** Local repository prefix of built images: pilot/<app>:<tag> (PILOT_IMAGE_PREFIX; tests use pilot-test). */
const imagePrefix = (): string => process.env.PILOT_IMAGE_PREFIX?.trim() || 'pilot';

/** The tag of a commit's image: the first 12 hex digits, `-dirty` for a working tree. */
export const imageTag = (commit: string, dirty: boolean): string => `${commit.slice(0, 12)}${dirty ? '-dirty' : ''}`;

/** The artifact digest a revision records for an image: the archive's digest, else the image ID. */
export const imageArtifact = (image: ImageRef): string => image.archive ?? image.id;

/** The registry images are published to (the most recently set), with its credentials; undefined = none. */
export async function publishRegistry(api: ApiClient): Promise<RegistryTarget | undefined> {
  const { registries } = await api.call<{ registries: RegistryView[] }>('GET', '/api/v1/registries?credentials=1');
  const r = registries.find((x) => x.publish);
  if (!r) return undefined;
  return { url: r.url, address: parseRegistryUrl(r.url).address, username: r.username ?? undefined, password: r.password };
}

/**
 * What can fail before anything is installed or built, checked first (seconds, not minutes into
 * the run): without a Dockerfile, a start command the generated image can run; the engine
 * answers; without a Dockerfile, the base image is there; a configured
 * registry answers HTTP at all (any status: authentication is the push's business).
 */
export async function preflight(req: {
  readonly api: ApiClient;
  readonly config: AppConfig;
  readonly appDir: string;
  readonly dockerfile: string | undefined;
  readonly line: (text: string) => void;
  readonly engine?: Engine;
  readonly signal?: AbortSignal | undefined;
}): Promise<void> {
  const base = req.dockerfile === undefined ? defaultBaseImage() : undefined;
  // The start command a generated image can run (it has no shell): no engine needed to know.
  if (base !== undefined) await checkGeneratedCommand(req.appDir, req.config.run, base);
  const engine = req.engine ?? connectEngine();
  await requireEngine(engine);
  if (base !== undefined) await requireBaseImage(engine, base);
  const registry = await publishRegistry(req.api);
  if (registry) await requireRegistry(registry.url, req.signal);
  req.line(
    `    checked: Docker engine answers${base ? `, base image ${base} present` : ''}${registry ? `, registry ${registry.url} answers` : ''}`,
  );
}

/** GET <registry>/v2/ answers at all within 5 s, else registry_unreachable naming it. */
export async function requireRegistry(url: string, signal?: AbortSignal): Promise<void> {
  const timeout = AbortSignal.timeout(5000);
  const { request } = await import('undici');
  try {
    const res = await request(`${url}/v2/`, { method: 'GET', signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    await res.body.dump();
  } catch (err) {
    if (signal?.aborted) throw fail.runCancelled();
    const why = timeout.aborted ? 'no answer within 5s' : ((err as { code?: string }).code ?? (err as Error).message);
    throw fail.registryDown({ url, why });
  }
}

/** Run the package and publish steps of a docker app; returns the image the revision runs. */
export async function imageSteps(req: ImageStepsRequest): Promise<ImageRef> {
  const engine = req.engine ?? connectEngine();
  const { config, line } = req;
  const tag = imageTag(req.commit, req.dirty);
  const timeout = AbortSignal.timeout(config.buildStepTimeoutMs);
  const signal = req.signal ? AbortSignal.any([req.signal, timeout]) : timeout;
  const built = await req.step('package', `package: docker build (${req.dockerfile ?? 'generated Dockerfile'})`, async () => {
    const b = await buildAppImage({
      engine,
      appDir: req.appDir,
      dockerfile: req.dockerfile,
      run: config.run,
      build: config.build,
      env: config.env,
      volumePaths: (config.volumes ?? []).map((v) => v.path),
      tag: `${imagePrefix()}/${config.name}:${tag}`,
      labels: { 'dev.pilot.app': config.name, 'dev.pilot.commit': req.commit },
      signal,
      onLine: (l) => line(`    ${sanitizeLine(l)}`),
    }).catch((err: unknown) => {
      if (timeout.aborted && !req.signal?.aborted)
        throw fail.dockerBuildTimeout({ buildStepTimeoutMs: Math.round(config.buildStepTimeoutMs / 1000) });
      throw err;
    });
    if (b.generated) for (const l of b.generated.split('\n').filter(Boolean)) line(`    | ${l}`);
    line(`    image ${b.id} (${(b.size / 1024 / 1024).toFixed(1)} MB, tagged ${b.tag})`);
    return b;
  });
  // The publish step gets its own deadline (same length): a registry that accepts and then hangs ends the run.
  const publishTimeout = AbortSignal.timeout(config.buildStepTimeoutMs);
  const publishSignal = req.signal ? AbortSignal.any([req.signal, publishTimeout]) : publishTimeout;
  return req.step('publish', 'publish', async () => {
    const registry = await publishRegistry(req.api);
    let image: ImageRef;
    if (registry) {
      const mask = secretMasker(registry.password ? [registry.password] : []);
      line(
        `    pushing to ${registry.url} as ${registry.address}/${config.name}:${tag}${registry.username ? ` (user ${mask(registry.username)})` : ''}`,
      );
      const t0 = performance.now();
      const p = await pushImage(engine, built.id, registry, config.name, tag, {
        signal: publishSignal,
        onLine: (l) => line(`    ${mask(sanitizeLine(l))}`),
      });
      line(
        `    pushed ${p.pushedLayers} layer(s)${p.pushedBytes > 0 ? ` (${(p.pushedBytes / 1024 / 1024).toFixed(2)} MB)` : ''}, ${p.existingLayers} already in the registry (${((performance.now() - t0) / 1000).toFixed(1)}s)`,
      );
      line(`    image ${p.ref}`);
      image = { id: built.id, ref: p.ref };
    } else {
      line('    no registry configured (`pilot registry set URL`): the image goes to the artifact repository as a tarball');
      const file = join(req.workspace, 'image.tar');
      const saved = await saveImage(engine, built.id, file, publishSignal);
      const t0 = performance.now();
      const { ArtifactClient } = await import('../artifacts/client.js');
      const r = await new ArtifactClient(req.api.servers, req.api.token).upload(file, saved.digest, {
        app: config.name,
        commit: req.commit,
      });
      const secs = (performance.now() - t0) / 1000;
      line(
        r.uploaded
          ? `    uploaded image archive ${saved.digest} (${(r.bytes / 1024 / 1024).toFixed(1)} MB, ${(r.bytes / 1024 / 1024 / Math.max(secs, 0.001)).toFixed(0)} MB/s)`
          : `    image archive ${saved.digest} already in the artifact repository: nothing to upload`,
      );
      image = { id: built.id, archive: saved.digest };
    }
    await req.api.updateRun(req.runId, { artifact: imageArtifact(image) });
    return image;
  });
}
