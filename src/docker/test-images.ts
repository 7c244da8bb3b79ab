/**
 * Test images for tests that need a real engine (tests only): the shared `pilot/node:<version>`
 * base, built once by `bootstrapNodeImage` when missing and never removed by a test that did not
 * create it, and tiny app images on top of it, tagged `pilot-test/…` and removed by their tests.
 * The agent's tests tag theirs `pilot-test/agent/…`: a clean-up that removes every `pilot-test/*`
 * reference (one path segment) in a test running beside them then leaves them alone.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { baseImageTag, bootstrapNodeImage } from './base-image.js';
import type { Engine } from './engine.js';
import { followBuild } from './progress.js';

const statusOf = (e: unknown): number | undefined => (e as { statusCode?: number }).statusCode;

let base: Promise<{ tag: string; created: boolean }> | undefined;

/** pilot/node:<this node's version>, built if missing; `created` says whether this process built it. */
export function ensureBaseImage(engine: Engine): Promise<{ tag: string; created: boolean }> {
  // bootstrapNodeImage keeps an existing base of this Node version; `built` says whether it made one.
  base ??= bootstrapNodeImage(engine, { tag: baseImageTag(process.versions.node) }).then((b) => ({ tag: b.tag, created: b.built }));
  return base;
}

/**
 * Build `tag` FROM the base image with `files` copied to /app/ and CMD `cmd`; returns the image ID.
 * `extra` lines go after the COPY (ENV, LABEL …).
 */
export async function buildTestImage(
  engine: Engine,
  tag: string,
  files: Record<string, string>,
  cmd: readonly string[],
  extra: readonly string[] = [],
): Promise<string> {
  if (!tag.startsWith('pilot-test/')) throw new Error(`test images are tagged pilot-test/…, not ${tag}`);
  const { tag: from } = await ensureBaseImage(engine);
  const dir = await mkdtemp(join(tmpdir(), 'pilot-test-image-'));
  try {
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    await writeFile(
      join(dir, 'Dockerfile'),
      [`FROM ${from}`, `COPY ${Object.keys(files).join(' ')} /app/`, ...extra, `CMD ${JSON.stringify(cmd)}`, ''].join('\n'),
    );
    const context = tar.c({ cwd: dir, portable: true, noMtime: true }, ['Dockerfile', ...Object.keys(files)]);
    const stream = await engine.buildImage(context as unknown as NodeJS.ReadableStream, { t: tag, rm: true, forcerm: true });
    return await followBuild(engine, stream);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Remove an image reference (a tag: other tags of the same image are untouched); missing is fine. */
export async function removeImage(engine: Engine, ref: string): Promise<void> {
  try {
    await engine.getImage(ref).remove({ noprune: false });
  } catch (e) {
    if (statusOf(e) !== 404) throw e;
  }
}

/** Force-remove every container labelled dev.pilot.node=<node> (test clean-up). */
export async function removeNodeContainers(engine: Engine, node: string): Promise<number> {
  const list = await engine.listContainers({ all: true, filters: { label: [`dev.pilot.node=${node}`] } });
  await Promise.all(
    list.map((c) =>
      engine
        .getContainer(c.Id)
        .remove({ force: true })
        .catch((e: unknown) => {
          if (statusOf(e) !== 404 && statusOf(e) !== 409) throw e;
        }),
    ),
  );
  return list.length;
}
