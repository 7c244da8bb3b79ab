/** The I/O half of the build plan: reads what build-plan.ts decides from. */
import { access, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { readPackageJson, stringScripts } from './package-json.js';
import { composeBuildEnv, LOCKFILES, detectLockfile, type WorkspaceFacts } from './build-plan.js';

// Re-exported: in their own file so the agent reads package.json without loading semver.
export { readPackageJson, stringScripts };

/** Read package.json and look for lockfiles in a checked-out workspace. A malformed package.json is invalid_config. */
export async function readWorkspaceFacts(dir: string): Promise<WorkspaceFacts> {
  const pkg = await readPackageJson(dir);
  if (pkg === undefined) return { hasPackageJson: false, lockfile: null, scripts: {} };
  const present = new Set<string>();
  await Promise.all(
    LOCKFILES.map(([name]) =>
      access(path.join(dir, name)).then(
        () => present.add(name),
        () => undefined,
      ),
    ),
  );
  const lockfile = detectLockfile((name) => present.has(name));
  const engines = typeof pkg['engines'] === 'object' && pkg['engines'] !== null ? (pkg['engines'] as Record<string, unknown>) : {};
  const defined = (o: Record<string, unknown>): Record<string, unknown> =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  const pmEngines = defined({ yarn: str(engines['yarn']), pnpm: str(engines['pnpm']) });
  const facts: WorkspaceFacts = {
    hasPackageJson: true,
    lockfile,
    scripts: stringScripts(pkg),
    ...defined({ packageManager: pkg['packageManager'], yarnLinker: await yarnLinker(dir) }),
    ...(Object.keys(pmEngines).length > 0 ? { engines: pmEngines } : {}),
  };
  if (lockfile === 'yarn') {
    // berry lockfiles always open with __metadata; v1 ones with "# yarn lockfile v1" (or are empty).
    const head = await readHead(path.join(dir, 'yarn.lock'));
    const format = /__metadata:\s*\n\s*version:\s*(\d+)/.exec(head);
    return { ...facts, yarnLock: /^__metadata:/m.test(head) ? 'berry' : 'v1', ...(format ? { yarnLockVersion: Number(format[1]) } : {}) };
  }
  if (lockfile === 'pnpm') {
    const v = /^lockfileVersion:\s*['"]?([0-9.]+)/m.exec(await readHead(path.join(dir, 'pnpm-lock.yaml')));
    return { ...facts, ...(v ? { pnpmLockVersion: v[1] } : {}) };
  }
  return facts;
}

/** The first 4 KiB of a file (lockfile headers): enough to tell formats apart without reading megabytes. */
async function readHead(file: string): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

/** yarn berry's `nodeLinker` in .yarnrc.yml, if the file sets one (a plain top-level key: no YAML parser needed). */
async function yarnLinker(dir: string): Promise<string | undefined> {
  const text = await readFile(path.join(dir, '.yarnrc.yml'), 'utf8').catch(() => undefined);
  const m = text === undefined ? null : /^nodeLinker:\s*['"]?([A-Za-z-]+)/m.exec(text);
  return m ? m[1] : undefined;
}

/** The build's environment for this Node: see composeBuildEnv. */
export function buildEnv(
  base: { readonly PATH?: string | undefined; readonly HOME?: string | undefined },
  extra: Readonly<Record<string, string>> = {},
): Record<string, string> {
  return composeBuildEnv(base, extra, path.dirname(process.execPath));
}
