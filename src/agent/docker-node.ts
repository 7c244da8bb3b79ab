/**
 * The agent's Docker side: whether this node's engine answers (checked at start and every 10 s,
 * reported to the control plane as `runtimes.docker`), the docker runtime over it, and what a
 * container instance needs before it starts (its image on the engine, its env, labels, limits).
 * The agent loop (agent.ts) stays the same for both runtimes; it asks here for the start request.
 */
import { join } from 'node:path';
import type { ArtifactClient } from '../artifacts/client.js';
import { fail } from '../core/errors.js';
import type { InstanceSpec } from '../core/types.js';
import { connectEngine, engineStatus, type Engine, type EngineStatus } from '../docker/engine.js';
import { engineReport } from '../docker/probe.js';
import { ImageFetcher } from '../docker/images.js';
import { FetchedImages } from './image-gc.js';
import type { LocalGcPolicy } from './cache-gc.js';
import type { LocalInstance } from './instance.js';
import { DockerRuntime, LABELS } from './runtimes/docker-runtime.js';
import type { StartRequest } from './runtimes/runtime.js';
import { containerVolumeEnv, dockerVolumeName } from './volumes.js';

export interface DockerNodeOptions {
  /** Default: DOCKER_HOST or /var/run/docker.sock. */
  readonly engine?: Engine | undefined;
  /** The node's name: label and name prefix of its containers. */
  readonly node: string;
  readonly home: string;
  readonly artifacts: () => ArtifactClient;
}

/**
 * The container's env: the app's own, over the image's ENV (so the image's PATH and HOME stay;
 * nothing of the agent's environment is added).
 */
export function containerEnv(spec: InstanceSpec, port: number): Record<string, string> {
  return {
    NODE_ENV: 'production',
    ...spec.env,
    PORT: String(port),
    PILOT_APP: spec.app,
    PILOT_REVISION: String(spec.revision),
    PILOT_COMMIT: spec.commit,
    PILOT_INSTANCE: spec.id,
    ...containerVolumeEnv(spec.volumes),
  };
}

export class DockerNode {
  readonly engine: Engine;
  readonly runtime: DockerRuntime;
  private readonly images: ImageFetcher;
  private readonly fetched: FetchedImages;
  private status: EngineStatus = { available: false, error: 'not checked yet' };
  private readonly node: string;

  constructor(opts: DockerNodeOptions) {
    this.engine = opts.engine ?? connectEngine();
    this.node = opts.node;
    this.runtime = new DockerRuntime({ engine: this.engine, node: opts.node });
    this.fetched = new FetchedImages(join(opts.home, 'images', 'fetched.json'));
    this.images = new ImageFetcher(this.engine, join(opts.home, 'images'), opts.artifacts, (image) => {
      try {
        this.fetched.record(image.id, undefined);
      } catch {
        // bookkeeping only: an unrecorded image is simply never collected
      }
    });
  }

  /** Remove images this agent fetched that no local instance uses (image-gc.ts); the IDs removed. */
  async collectImages(inUse: () => ReadonlySet<string>, now = Date.now(), policy?: LocalGcPolicy): Promise<string[]> {
    if (!this.status.available) return [];
    return this.fetched.collect(this.engine, inUse, now, policy);
  }

  /** What the node reports as `runtimes.docker`. */
  get report(): { available: boolean; version?: string; error?: string } {
    return engineReport(this.status);
  }

  /** Ask the engine; true when what the node reports changed. */
  async check(): Promise<boolean> {
    const before = JSON.stringify(this.report);
    this.status = await engineStatus(this.engine, 2000);
    return JSON.stringify(this.report) !== before;
  }

  /**
   * Remove containers of this node and agent (labelled with a stateDir under instancesDir) whose
   * instance the agent no longer has: left running when their instance was removed while the
   * engine did not answer (no handle to stop them by). Returns how many were removed.
   */
  async sweep(instancesDir: string, known: ReadonlySet<string>): Promise<number> {
    if (!this.status.available) return 0;
    const prefix = instancesDir.endsWith('/') ? instancesDir : `${instancesDir}/`;
    const list = await this.engine.listContainers({ all: true, filters: { label: [`${LABELS.node}=${this.node}`] } }).catch(() => []);
    const stray = list.filter((c) => (c.Labels[LABELS.stateDir] ?? '').startsWith(prefix) && !known.has(c.Labels[LABELS.instance] ?? ''));
    await Promise.all(
      stray.map((c) =>
        this.engine
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => undefined),
      ),
    );
    return stray.length;
  }

  /**
   * Everything DockerRuntime.start needs for the instance, its image fetched first. Rejects with
   * runtime_unavailable (naming what to start) when the engine does not answer.
   */
  async request(inst: LocalInstance, port: number): Promise<StartRequest> {
    const spec = inst.spec;
    if (!this.status.available) await this.check();
    if (!this.status.available) throw fail.dockerEngineUnavailable({ error: this.status.error });
    if (spec.image === undefined) throw fail.dockerInstanceWithoutImage({ id: spec.id });
    await this.images.ensure(spec.image, spec.registryAuth);
    if (this.fetched.has(spec.image.id)) this.fetched.record(spec.image.id, spec.app); // for the per-app keep rule
    return {
      instanceId: spec.id,
      stateDir: inst.stateDir,
      cwd: '/',
      argv: spec.run ?? [],
      env: containerEnv(spec, port),
      image: spec.image.id,
      limits: spec.resources,
      labels: { [LABELS.app]: spec.app, [LABELS.revision]: String(spec.revision) },
      volumes: (spec.volumes ?? []).map((v) => ({ source: dockerVolumeName(this.node, spec.app, v.name), target: v.path })),
    };
  }
}
