/**
 * The npm registry, asked through the user's own npm: `npm config get registry`, `npm view`,
 * `npm pack`, run as argv lists. So ~/.npmrc, npm_config_* variables, mirrors, proxies, auth and
 * npm's own cache (~/.npm/_cacache: a tarball is downloaded once per machine) all apply as they
 * do to the user's installs.
 */
import { join } from 'node:path';
import { fail } from '../core/errors.js';
import { formatArgv, runCommand } from '../os/exec.js';

export interface Dist {
  /** Subresource integrity of the tarball as the registry publishes it (sha512-…). */
  readonly integrity: string;
  readonly tarball: string;
}

/** Connection failures as npm reports them (`npm error code ECONNREFUSED`). */
const UNREACHABLE =
  /\b(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ERR_SOCKET_TIMEOUT|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED_CERT_IN_CHAIN|CERT_HAS_EXPIRED)\b/;

/** npm's environment: the caller's, minus Pilot's own variables (tokens) and with this node first on PATH. */
export function npmEnv(base: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  // Not Pilot's own settings, nor PostgreSQL's connection (PGPASSWORD for `pilot server --store`):
  // npm runs an app's lifecycle scripts with this environment.
  for (const [k, v] of Object.entries(base)) if (v !== undefined && !k.startsWith('PILOT_') && !/^PG[A-Z]+$/.test(k)) env[k] = v;
  env['PATH'] = [join(process.execPath, '..'), env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin'].join(':');
  env['npm_config_update_notifier'] = 'false';
  return env;
}

export class NpmRegistry {
  private url: string | undefined;

  /** `cwd` must be a folder without an app's .npmrc in it (Pilot's runtime cache). */
  constructor(
    private readonly cwd: string,
    private readonly env: Record<string, string> = npmEnv(),
    private readonly signal?: AbortSignal,
  ) {}

  /** The registry URL npm is configured with (for messages: "the registry it asked"). */
  async registryUrl(): Promise<string> {
    if (this.url === undefined) {
      const out = await this.npm(['config', 'get', 'registry'], 60_000);
      this.url = out.stdout.trim() || 'https://registry.npmjs.org/';
    }
    return this.url;
  }

  /** Every published version of `pkg`. */
  async versions(pkg: string): Promise<string[]> {
    const out = await this.npmOk(['view', pkg, 'versions', '--json'], `the versions of ${pkg}`, 120_000);
    const v = parseJson(out);
    if (typeof v === 'string') return [v];
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
    throw fail.registryVersionsUnreadable({ registry: await this.registryUrl(), pkg });
  }

  /** Every release of npm with its own engines.node (absent for the releases that publish none). */
  async npmReleases(): Promise<{ version: string; enginesNode?: string }[]> {
    const out = await this.npmOk(['view', 'npm@>=1.0.0', 'version', 'engines', '--json'], 'the releases of npm', 120_000);
    const v = parseJson(out);
    const list = Array.isArray(v) ? v : v === undefined ? [] : [v];
    const releases: { version: string; enginesNode?: string }[] = [];
    // npm prints bare version strings when no release in the answer has the engines field.
    for (const item of list as unknown[]) {
      const r = (typeof item === 'string' ? { version: item } : item) as { version?: unknown; engines?: { node?: unknown } } | null;
      if (typeof r !== 'object' || r === null || typeof r.version !== 'string') continue;
      const node = typeof r.engines === 'object' && r.engines !== null ? r.engines.node : undefined;
      releases.push(typeof node === 'string' ? { version: r.version, enginesNode: node } : { version: r.version });
    }
    if (releases.length === 0) throw fail.registryWithoutNpm({ registry: await this.registryUrl() });
    return releases;
  }

  /** dist-tags.latest of pkg, or undefined when the registry has none. */
  async latest(pkg: string): Promise<string | undefined> {
    const v = parseJson(await this.npmOk(['view', pkg, 'dist-tags.latest', '--json'], `the latest tag of ${pkg}`, 120_000));
    return typeof v === 'string' ? v : undefined;
  }

  /** dist.integrity and dist.tarball of pkg@version; node_version_not_found when the registry has no such version. */
  async dist(pkg: string, version: string): Promise<Dist> {
    const out = await this.npmOk(['view', `${pkg}@${version}`, 'dist', '--json'], `${pkg}@${version}`, 120_000);
    const d = parseJson(out) as Partial<Dist> | undefined;
    if (d === undefined || typeof d !== 'object' || Array.isArray(d)) {
      throw fail.registryHasNoVersion(
        { registry: await this.registryUrl(), pkg, version },
        { details: { registry: await this.registryUrl() } },
      );
    }
    if (typeof d.integrity !== 'string' || !d.integrity.startsWith('sha512-')) {
      throw fail.registryWithoutSha512({ pkg, version, registry: await this.registryUrl() });
    }
    return { integrity: d.integrity, tarball: String(d.tarball ?? '') };
  }

  /** Download pkg@version's tarball into `dir` (npm verifies it against the registry on the way); the file's path. */
  async pack(pkg: string, version: string, dir: string): Promise<string> {
    const out = await this.npmOk(
      ['pack', `${pkg}@${version}`, '--pack-destination', dir, '--json'],
      `the tarball of ${pkg}@${version}`,
      15 * 60_000,
    );
    const files = parseJson(out) as { filename?: string }[] | undefined;
    const name = Array.isArray(files) ? files[0]?.filename : undefined;
    if (typeof name !== 'string' || name.includes('/')) throw fail.npmPackSilent({ pkg, version });
    return join(dir, name);
  }

  private async npm(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string[] }> {
    const stdout: string[] = [];
    const stderr: string[] = [];
    const r = await runCommand(['npm', ...args], {
      cwd: this.cwd,
      env: this.env,
      timeoutMs,
      maxOutputTail: 40,
      onLine: (stream, line) => (stream === 'stdout' ? stdout : stderr).push(line),
      ...(this.signal ? { signal: this.signal } : {}),
    });
    return { code: r.code, stdout: stdout.join('\n'), stderr };
  }

  /** Run npm; on failure, say what was asked of which registry and why, in the catalogue's terms. */
  private async npmOk(args: string[], what: string, timeoutMs: number): Promise<string> {
    const r = await this.npm(args, timeoutMs);
    if (r.code === 0) return r.stdout;
    const registry = await this.registryUrl().catch(() => 'the configured npm registry');
    const text = [...r.stderr, r.stdout].join('\n');
    const json = parseJson(r.stdout) as { error?: { code?: string; summary?: string } } | undefined;
    const reason =
      json?.error?.summary ??
      (
        r.stderr.find((l) => /npm (ERR!|error) (code|errno)/.test(l)) ??
        r.stderr.find((l) => /error/i.test(l)) ??
        `npm exited with code ${r.code}`
      ).replace(/^npm (ERR!|error)\s*/, '');
    const details = { registry, command: formatArgv(['npm', ...args]), tail: r.stderr.slice(-10) };
    if (/\bE404\b/.test(text)) throw fail.registryMissing({ registry, what }, { details });
    if (/\bEINTEGRITY\b/.test(text)) {
      throw fail.integrityMismatchFromRegistry({ what, registry }, { details });
    }
    if (UNREACHABLE.test(text)) {
      throw fail.registryUnreachable({ registry, what, reason }, { details });
    }
    throw fail.npmCommandFailed({ command: formatArgv(['npm', ...args]), registry, reason }, { details });
  }
}

function parseJson(text: string): unknown {
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
