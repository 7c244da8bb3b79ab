/**
 * An image as an OCI image layout tarball (image-spec v1.0: `oci-layout`, `index.json`,
 * `blobs/sha256/…`), made from the engine's `docker save` output. It also carries a docker-style
 * `manifest.json` pointing into `blobs/`, as Docker 25+ writes it, so `docker load` of any engine
 * (20.10 reads only manifest.json) loads it, and OCI tools (skopeo, crane, podman) read it as
 * well. Layers stay uncompressed (`…layer.v1.tar`): their digests are then the image's diff IDs.
 * The tarball is deterministic for an image: same ID, same bytes, same digest.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, mkdir, mkdtemp, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { sha256File, sha256Tap, type Digested } from '../artifacts/digest.js';
import { fail } from '../core/errors.js';
import type { Engine } from './engine.js';

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const CONFIG = 'application/vnd.oci.image.config.v1+json';
const LAYER = 'application/vnd.oci.image.layer.v1.tar';

type Blob = Digested;

/** Write `docker save` of image `id` to `file` as an OCI image layout tarball; its sha256 and size. */
export async function saveOciArchive(engine: Engine, id: string, file: string, signal?: AbortSignal): Promise<Blob> {
  const work = await mkdtemp(join(dirname(file), '.oci-'));
  try {
    // 1. The engine's own archive, unpacked (it holds only what this engine wrote for this ID).
    const saved = join(work, 'saved');
    await mkdir(saved);
    await pipeline(await engine.getImage(id).get(), tar.x({ cwd: saved, strict: true }), ...(signal ? [{ signal }] : []));
    const inside = async (rel: string): Promise<string> => {
      const p = await realpath(join(saved, rel));
      if (!p.startsWith(saved + sep)) throw fail.dockerSaveOutsideArchive({ id, rel });
      return p;
    };
    const entries = JSON.parse(await readFile(join(saved, 'manifest.json'), 'utf8')) as { Config: string; Layers: string[] }[];
    if (entries.length !== 1) throw fail.dockerSaveImageCount({ id, entriesCount: entries.length });
    const entry = entries[0]!;

    // 2. The layout: every blob named by its sha256 (hard links: no copy).
    const oci = join(work, 'oci');
    const blobs = join(oci, 'blobs', 'sha256');
    await mkdir(blobs, { recursive: true });
    const put = async (src: string): Promise<Blob> => {
      const b = await sha256File(src);
      await link(src, join(blobs, b.digest.slice(7))).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e; // the same layer twice in one image
      });
      return b;
    };
    const config = await put(await inside(entry.Config));
    if (config.digest !== id) throw fail.dockerSaveWrongConfig({ id, digest: config.digest });
    const layers: Blob[] = [];
    for (const l of entry.Layers) layers.push(await put(await inside(l)));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MANIFEST,
        config: { mediaType: CONFIG, digest: config.digest, size: config.size },
        layers: layers.map((l) => ({ mediaType: LAYER, digest: l.digest, size: l.size })),
      }),
    );
    const manifestDigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
    await writeFile(join(blobs, manifestDigest.slice(7)), manifest);
    await writeFile(join(oci, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(
      join(oci, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [{ mediaType: MANIFEST, digest: manifestDigest, size: manifest.length }],
      }),
    );
    // For `docker load`: the same image, by paths into blobs/ (untagged: a load changes no tag).
    await writeFile(
      join(oci, 'manifest.json'),
      JSON.stringify([
        {
          Config: `blobs/sha256/${config.digest.slice(7)}`,
          RepoTags: null,
          Layers: layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`),
        },
      ]),
    );

    // 3. One tarball, deterministic: sorted names, no times, no owners.
    const names = [
      'oci-layout',
      'index.json',
      'manifest.json',
      ...[...new Set([manifestDigest, config.digest, ...layers.map((l) => l.digest)])].sort().map((d) => `blobs/sha256/${d.slice(7)}`),
    ];
    const { tap, result } = sha256Tap();
    await pipeline(
      tar.c({ cwd: oci, portable: true, noMtime: true, noDirRecurse: true }, names),
      tap,
      createWriteStream(file, { mode: 0o600 }),
      ...(signal ? [{ signal }] : []),
    );
    const written = result();
    if ((await stat(file)).size !== written.size) throw fail.imageArchiveIncomplete({ file });
    return written;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
