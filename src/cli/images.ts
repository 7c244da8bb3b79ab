/** `pilot images bootstrap-node`, `pilot registry set|show|remove`. */
import { fail } from '../core/errors.js';
import type { RegistryView } from '../api/wire.js';
import { ago, apiClient, output, table, type GlobalOptions } from './context.js';

/** Build pilot/node:<this node's version> on this machine's Docker engine (no API call: it is local). */
export async function imagesBootstrapNode(opts: GlobalOptions & { tag?: string; force?: boolean }): Promise<void> {
  const { connectEngine, requireEngine } = await import('../docker/engine.js');
  const { bootstrapNodeImage } = await import('../docker/base-image.js');
  const engine = connectEngine();
  await requireEngine(engine);
  const t0 = performance.now();
  const img = await bootstrapNodeImage(engine, {
    ...(opts.tag ? { tag: opts.tag } : {}),
    force: opts.force === true,
    ...(opts.json ? {} : { onLine: (l: string) => process.stderr.write(`  ${l}\n`) }),
  });
  const seconds = Number(((performance.now() - t0) / 1000).toFixed(1));
  output(opts, { image: img, seconds }, () =>
    img.built
      ? `${img.tag} ${img.id} (Node.js ${img.nodeVersion}) built in ${seconds}s: apps with runtime: docker and no Dockerfile build on it`
      : `${img.tag} ${img.id} (Node.js ${img.nodeVersion}) is already there; --force rebuilds it (a new image ID: app images then no longer share its layers)`,
  );
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

export async function registrySet(url: string, opts: GlobalOptions & { username?: string; passwordStdin?: boolean }): Promise<void> {
  if (opts.passwordStdin && !opts.username) throw fail.passwordStdinNeedsUsername();
  if (opts.username && !opts.passwordStdin) throw fail.usernameNeedsPasswordStdin();
  const password = opts.passwordStdin ? await readStdin() : undefined;
  if (password === '') throw fail.emptyPassword();
  const res = await apiClient(opts).call<{ registry: RegistryView }>('PUT', '/api/v1/registries', {
    url,
    ...(opts.username ? { username: opts.username, password } : {}),
  });
  output(
    opts,
    res,
    () =>
      `registry ${res.registry.url} set${res.registry.username ? ` (user ${res.registry.username}, password stored encrypted)` : ''}: images of runtime: docker apps are pushed there as ${res.registry.address}/<app>`,
  );
}

export async function registryShow(opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ registries: RegistryView[] }>('GET', '/api/v1/registries');
  output(opts, res, () =>
    res.registries.length === 0
      ? 'no registry: images go to the artifact repository as tarballs (`pilot registry set URL` to push to a registry)'
      : table(
          ['URL', 'USER', 'PASSWORD', 'PUBLISH', 'UPDATED'],
          res.registries.map((r) => [
            r.url,
            r.username,
            r.hasPassword ? 'stored' : null,
            r.publish ? 'yes' : 'no (pull only)',
            ago(r.updatedAt),
          ]),
        ),
  );
}

export async function registryRemove(url: string, opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ removed: string }>('DELETE', `/api/v1/registries?url=${encodeURIComponent(url)}`);
  output(opts, res, () => `registry ${res.removed} removed (revisions already pushed there keep their image references)`);
}

interface DockerStatus {
  revisions: { number: number; runtime?: string; image?: { id: string; ref?: string; archive?: string } | null }[];
  instances: {
    id: string;
    revision: number;
    node: string;
    address?: string;
    port?: number;
    containerId?: string;
    state: string;
    desired: string;
    restarts: number;
    lastError?: string;
  }[];
}

const short = (digest: string | undefined): string | undefined => digest?.replace(/^(sha256:[0-9a-f]{12})[0-9a-f]+$/, '$1');

/** `pilot status` instances of a docker app: the image each runs (by digest), its container and node. Undefined for process apps. */
export function dockerInstanceTable(res: DockerStatus): string | undefined {
  if (!res.revisions.some((r) => r.runtime === 'docker')) return undefined;
  const images = new Map(res.revisions.map((r) => [r.number, r.image ?? undefined]));
  return table(
    ['ID', 'REV', 'NODE', 'ADDRESS', 'IMAGE', 'CONTAINER', 'STATE', 'DESIRED', 'RESTARTS', 'LAST ERROR'],
    res.instances.map((i) => {
      const img = images.get(i.revision);
      const image = img?.ref ? `${img.ref.split('@')[0]}@${short(img.ref.split('@')[1])}` : short(img?.id);
      return [
        i.id,
        i.revision,
        i.node,
        i.port ? `${i.address}:${i.port}` : null,
        image,
        i.containerId?.slice(0, 12),
        i.state,
        i.desired,
        i.restarts,
        i.lastError,
      ];
    }),
  );
}
