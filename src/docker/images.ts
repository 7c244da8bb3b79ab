/**
 * Agent side of container images: make sure an instance's image is on the engine before it starts.
 * The image is named by its ID (sha256 of its config), the same on every engine. If the engine has
 * it, nothing happens; otherwise it is pulled from the registry by manifest digest (with the
 * registry credentials when the control plane sent them), or its tarball is downloaded from Pilot's
 * artifact repository (digest-verified) and loaded. Either way the result must have the recorded
 * ID, else it is refused and what was pulled is removed. Concurrent starts share one fetch.
 * Credentials travel only in the X-Registry-Auth header to the engine: never in a message or log.
 */
import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as tar from 'tar';
import type { ArtifactClient } from '../artifacts/client.js';
import { fail } from '../core/errors.js';
import type { ImageRef, InstanceSpec } from '../core/types.js';
import type { Engine } from './engine.js';
import { followProgress, type ProgressMessage } from './progress.js';

export type RegistryAuth = NonNullable<InstanceSpec['registryAuth']>;

/** A pull reference pinned by manifest digest: host[:port]/path@sha256:<64 hex>. */
const PINNED_REF = /^[a-z0-9.-]+(?::\d{1,5})?\/[a-z0-9._/-]+@sha256:[a-f0-9]{64}$/;
const IMAGE_ID = /^sha256:[a-f0-9]{64}$/;
const MAX_MANIFEST_BYTES = 1024 * 1024;

const statusOf = (e: unknown): number | undefined => (e as { statusCode?: number }).statusCode;
const engineMessage = (e: unknown): string =>
  ((e as { json?: { message?: string } }).json?.message ?? (e as Error).message ?? String(e)).trim();

/** Image IDs (config digests) listed in a `docker save` archive's manifest.json. */
export async function archiveImageIds(file: string): Promise<string[]> {
  const chunks: Buffer[] = [];
  let size = 0;
  let found = false;
  await tar.t({
    file,
    onReadEntry: (entry) => {
      if (entry.path !== 'manifest.json') return;
      found = true;
      entry.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_MANIFEST_BYTES) chunks.push(c);
      });
    },
  });
  if (!found) throw fail.imageArchiveWithoutManifest();
  if (size > MAX_MANIFEST_BYTES) throw fail.manifestTooLarge();
  let manifest: unknown;
  try {
    manifest = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw fail.manifestNotJson();
  }
  if (!Array.isArray(manifest)) throw fail.manifestNotList();
  return manifest.map((m: { Config?: unknown }) => {
    // docker 20–24: "<hex>.json"; OCI layout (docker 25+): "blobs/sha256/<hex>"
    const hex = typeof m.Config === 'string' ? /([a-f0-9]{64})(?:\.json)?$/.exec(m.Config)?.[1] : undefined;
    if (!hex) throw fail.manifestWithoutConfig();
    return `sha256:${hex}`;
  });
}

export class ImageFetcher {
  private readonly inflight = new Map<string, Promise<void>>();

  constructor(
    private readonly engine: Engine,
    private readonly downloadDir: string,
    private readonly artifacts: () => ArtifactClient,
    /** Called once an image was pulled or loaded by this fetcher (not when the engine already had it). */
    private readonly onFetched?: (image: ImageRef) => void,
  ) {}

  /** Resolves once the engine has image.id; rejects with the reason (digest_mismatch, registry_unreachable, …). */
  async ensure(image: ImageRef, auth?: RegistryAuth): Promise<void> {
    if (!IMAGE_ID.test(image.id)) throw fail.invalidImageId({ id: image.id });
    if (await this.has(image.id)) return;
    let p = this.inflight.get(image.id);
    if (!p) {
      p = this.fetch(image, auth)
        .then(() => this.onFetched?.(image))
        .finally(() => this.inflight.delete(image.id));
      this.inflight.set(image.id, p);
    }
    return p;
  }

  /** Whether the engine has the image. */
  async has(idOrRef: string): Promise<boolean> {
    return (await this.imageId(idOrRef)) !== undefined;
  }

  private async imageId(idOrRef: string): Promise<string | undefined> {
    try {
      return (await this.engine.getImage(idOrRef).inspect()).Id;
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw fail.cannotInspectImage({ idOrRef, reason: engineMessage(e) }, { cause: e });
    }
  }

  private async fetch(image: ImageRef, auth: RegistryAuth | undefined): Promise<void> {
    if (image.ref !== undefined) return this.pull(image, image.ref, auth);
    if (image.archive !== undefined) return this.load(image, image.archive);
    throw fail.imageUnreachable({ id: image.id });
  }

  private async pull(image: ImageRef, ref: string, auth: RegistryAuth | undefined): Promise<void> {
    if (!PINNED_REF.test(ref)) {
      throw fail.imageRefNotPinned({ ref });
    }
    try {
      const authconfig = auth ? { serveraddress: auth.serveraddress, username: auth.username, password: auth.password } : {};
      const stream = await this.engine.createImage(authconfig, { fromImage: ref });
      failOnError(await followProgress(this.engine, stream));
    } catch (e) {
      throw fail.pullFailed({ ref, reason: engineMessage(e) }, { cause: e });
    }
    const got = await this.imageId(ref);
    if (got === image.id) return;
    await this.engine
      .getImage(ref)
      .remove()
      .catch(() => undefined);
    throw fail.pulledImageDiffers({ got: got ?? '(none)', id: image.id, ref });
  }

  private async load(image: ImageRef, archive: string): Promise<void> {
    await mkdir(this.downloadDir, { recursive: true });
    const file = join(this.downloadDir, `${archive.replace('sha256:', '')}.tar`);
    try {
      await this.artifacts().download(archive, file); // digest-verified, or it throws
      const ids = await archiveImageIds(file);
      // Refused before loading, so nothing has to be removed afterwards.
      if (ids.length !== 1 || ids[0] !== image.id)
        throw fail.archiveHoldsOtherImage({ archive, ids: ids.join(', ') || 'no image', id: image.id });
      try {
        const stream = await this.engine.loadImage(createReadStream(file), { quiet: true });
        failOnError(await followProgress(this.engine, stream));
      } catch (e) {
        throw fail.dockerLoadFailed({ archive, reason: engineMessage(e) }, { cause: e });
      }
      const got = await this.imageId(image.id);
      if (got !== image.id) throw fail.loadedImageDiffers({ got: got ?? '(none)', id: image.id, archive });
    } finally {
      await rm(file, { force: true });
    }
  }
}

/** The engine reports a failed pull or load as a message in the stream, not as a status. */
function failOnError(messages: readonly ProgressMessage[]): void {
  const bad = messages.find((m) => m.error !== undefined);
  if (bad) throw new Error(bad.errorDetail?.message ?? bad.error);
}
