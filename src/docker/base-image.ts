/**
 * `pilot images bootstrap-node`: a minimal Node.js base image made from this machine's own Node
 * runtime, for machines that cannot pull from a registry. The image holds the node binary, the
 * shared libraries it links (from ldd), npm, /tmp (1777), a passwd entry and the `node` user's
 * home (owned by it); nothing else. Built through
 * the Engine API from a tar context staged in a temp folder.
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile, cp } from 'node:fs/promises';
import { existsSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as tar from 'tar';
import { fail } from '../core/errors.js';
import { runCommand } from '../os/exec.js';
import type { Engine } from './engine.js';
import { followBuild } from './progress.js';

export interface BaseImage {
  readonly tag: string;
  readonly id: string;
  readonly nodeVersion: string;
  /** False when the tag already named a base image of this Node version (nothing was built). */
  readonly built: boolean;
}

/** The tag bootstrap-node gives the image for a Node version: pilot/node:20.20.2. */
export const baseImageTag = (version: string): string => `pilot/node:${version.replace(/^v/, '')}`;

/** The shared libraries `bin` links, with the loader, from ldd's output. */
export async function linkedLibraries(bin: string): Promise<string[]> {
  const r = await runCommand(['ldd', bin], { cwd: '/', env: { PATH: '/usr/bin:/bin' }, timeoutMs: 10_000, maxOutputTail: 1000 });
  if (r.code !== 0) throw fail.lddFailed({ bin, tail: r.tail.join('\n') });
  const libs = new Set<string>();
  for (const line of r.tail) {
    const m = /(\/\S+)\s+\(0x/.exec(line);
    if (m) libs.add(m[1]!);
  }
  return [...libs];
}

/**
 * Build the base image, unless `tag` already names one made from the same Node version (then it is
 * kept: rebuilding would give a new image ID, orphan the old one and every app layer built on it).
 * `force` rebuilds anyway.
 */
export async function bootstrapNodeImage(
  engine: Engine,
  opts: { nodeBin?: string; tag?: string; force?: boolean; onLine?: (line: string) => void } = {},
): Promise<BaseImage> {
  const nodeBin = realpathSync(opts.nodeBin ?? process.execPath);
  const v = await runCommand([nodeBin, '--version'], { cwd: '/', env: {}, timeoutMs: 10_000 });
  const version = (v.tail[0] ?? '').trim().replace(/^v/, '');
  if (v.code !== 0 || !/^\d+\.\d+\.\d+$/.test(version)) throw fail.nodeVersionFailed({ nodeBin, tail: v.tail.join('\n') });
  const tag = opts.tag ?? baseImageTag(version);
  if (!opts.force) {
    const existing = await engine
      .getImage(tag)
      .inspect()
      .catch(() => undefined);
    if (existing?.Config?.Labels?.['dev.pilot.node-version'] === version)
      return { tag, id: existing.Id, nodeVersion: version, built: false };
  }
  const dir = await mkdtemp(join(tmpdir(), 'pilot-base-'));
  try {
    const root = join(dir, 'rootfs');
    const put = async (src: string, dest = src): Promise<void> => {
      await mkdir(join(root, dirname(dest)), { recursive: true });
      await copyFile(realpathSync(src), join(root, dest));
    };
    await put(nodeBin, '/usr/local/bin/node');
    for (const lib of await linkedLibraries(nodeBin)) await put(lib);
    const npm = join(dirname(nodeBin), '..', 'lib', 'node_modules', 'npm');
    if (existsSync(npm)) {
      await cp(npm, join(root, 'usr/local/lib/node_modules/npm'), { recursive: true, dereference: true });
    }
    await mkdir(join(root, 'tmp'), { recursive: true });
    await mkdir(join(root, 'etc'), { recursive: true });
    await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/sbin/nologin\nnode:x:1000:1000:node:/home/node:/sbin/nologin\n');
    await writeFile(join(root, 'etc/group'), 'root:x:0:\nnode:x:1000:\n');
    await mkdir(join(root, 'home/node'), { recursive: true });
    await mkdir(join(root, 'root'), { recursive: true });
    await writeFile(
      join(dir, 'Dockerfile'),
      [
        'FROM scratch',
        'COPY rootfs/ /',
        'ENV PATH=/usr/local/bin:/usr/bin:/bin NODE_VERSION=' + version,
        existsSync(npm) ? 'ENV NPM_CLI=/usr/local/lib/node_modules/npm/bin/npm-cli.js' : '',
        // A portable tar makes every file root's and clears group/other write bits (/tmp came out
        // 1755): the modes and the app user's home are set here, in the image.
        'RUN ["/usr/local/bin/node","-e","const fs=require(\'fs\');fs.chmodSync(\'/tmp\',0o1777);fs.chownSync(\'/home/node\',1000,1000)"]',
        `LABEL dev.pilot.base="node" dev.pilot.node-version="${version}"`,
        'CMD ["node"]',
        '',
      ]
        .filter((l) => l !== '')
        .join('\n'),
    );
    const context = tar.c({ cwd: dir, portable: true, noMtime: true }, ['Dockerfile', 'rootfs']);
    const stream = await engine.buildImage(context as unknown as NodeJS.ReadableStream, {
      t: tag,
      rm: true,
      forcerm: true,
      networkmode: 'none',
    });
    const id = await followBuild(engine, stream, opts.onLine);
    return { tag, id, nodeVersion: version, built: true };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
