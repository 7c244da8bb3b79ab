/**
 * Getting a built image to the agents, two ways:
 * - a registry: tag `<address>/<app>:<tag>`, push through the Engine API (credentials in
 *   X-Registry-Auth), and take the manifest digest from the push stream's aux message. The image is
 *   then named by digest: `<address>/<app>@sha256:<manifest>`. Layers the registry has are not sent
 *   again, so a retry after a failed push only sends what is missing.
 * - no registry: the image as an OCI image layout tarball (oci-archive.ts; deterministic for an image ID), named
 *   by its sha256, for Pilot's artifact repository.
 */
import { type PilotError, fail } from '../core/errors.js';
import type { Engine } from './engine.js';
import { followProgress, type ProgressMessage } from './progress.js';

export interface RegistryTarget {
  /** http://127.0.0.1:5000, for messages. */
  readonly url: string;
  /** 127.0.0.1:5000, for image names. */
  readonly address: string;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
}

export interface PushResult {
  /** <address>/<app>@sha256:<manifest digest> */
  readonly ref: string;
  readonly digest: string;
  /** Layers sent, and layers the registry already had. */
  readonly pushedLayers: number;
  readonly existingLayers: number;
  /** Bytes the engine reported sending (compressed layer sizes). */
  readonly pushedBytes: number;
}

type PushMessage = ProgressMessage & { readonly progressDetail?: { readonly current?: number; readonly total?: number } };

/** Words in the engine's push error that mean the registry said no to these credentials. */
const REFUSED = /unauthorized|authentication required|denied|forbidden|401|403/i;

/** Tag `id` as `<address>/<repo>:<tag>` and push it; resolves with the reference by manifest digest. */
export async function pushImage(
  engine: Engine,
  id: string,
  target: RegistryTarget,
  repo: string,
  tag: string,
  opts: { signal?: AbortSignal; onLine?: (line: string) => void } = {},
): Promise<PushResult> {
  const name = `${target.address}/${repo}`;
  await engine.getImage(id).tag({ repo: name, tag });
  const authconfig =
    target.username !== undefined
      ? { username: target.username, password: target.password ?? '', serveraddress: target.address }
      : undefined;
  const pushFailed = (why: string): PilotError =>
    REFUSED.test(why) ? fail.pushRefused({ url: target.url, name, tag, why }) : fail.pushFailed({ name, tag, url: target.url, why });
  let stream: NodeJS.ReadableStream;
  try {
    stream = await engine
      .getImage(name)
      .push({ tag, ...(authconfig ? { authconfig } : {}), ...(opts.signal ? { abortSignal: opts.signal } : {}) });
  } catch (err) {
    throw pushFailed((err as { json?: { message?: string } }).json?.message ?? (err as Error).message);
  }
  let digest: string | undefined;
  let failure: string | undefined;
  const layerBytes = new Map<string, number>();
  const existing = new Set<string>();
  const pushed = new Set<string>();
  try {
    await followProgress(engine, stream, (raw) => {
      const m = raw as PushMessage;
      if (m.error) failure = m.errorDetail?.message ?? m.error;
      if (m.aux?.Digest) digest = m.aux.Digest;
      const sent = Math.max(m.progressDetail?.total ?? 0, m.progressDetail?.current ?? 0);
      if (m.id && m.status === 'Pushing' && sent > (layerBytes.get(m.id) ?? 0)) layerBytes.set(m.id, sent);
      if (m.id && m.status === 'Layer already exists') existing.add(m.id);
      if (m.id && m.status === 'Pushed') pushed.add(m.id);
      // One line per layer outcome, not every progress tick.
      if (m.status && m.status !== 'Pushing' && m.status !== 'Waiting' && m.status !== 'Preparing')
        opts.onLine?.(m.id ? `${m.id}: ${m.status}` : m.status);
    });
  } catch (err) {
    failure ??= (err as Error).message;
  }
  if (failure) throw pushFailed(failure);
  if (!digest || !/^sha256:[0-9a-f]{64}$/.test(digest)) throw pushFailed('the push finished without a manifest digest');
  let pushedBytes = 0;
  for (const l of pushed) pushedBytes += layerBytes.get(l) ?? 0;
  return { ref: `${name}@${digest}`, digest, pushedLayers: pushed.size, existingLayers: existing.size, pushedBytes };
}

/** No registry: the image as an OCI image layout tarball (see oci-archive.ts), its sha256 and size. */
export { saveOciArchive as saveImage } from './oci-archive.js';
