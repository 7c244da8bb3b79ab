/**
 * The one place a blob store is made: `pilot server --artifacts URL` / PILOT_ARTIFACTS.
 *
 *   (nothing)                      FsBlobStore in $PILOT_HOME/artifacts (the embedded default)
 *   /ABSOLUTE/FOLDER               FsBlobStore in that folder (replicas on one machine, or a shared mount)
 *   oci://HOST[:PORT]/REPO         OciBlobStore over HTTPS
 *   oci+http://HOST[:PORT]/REPO    OciBlobStore over plain HTTP: loopback hosts only
 *
 * Credentials come from the environment, never from the URL (argv is visible in `ps`):
 * PILOT_ARTIFACTS_USERNAME with PILOT_ARTIFACTS_PASSWORD_FILE or PILOT_ARTIFACTS_PASSWORD, or a
 * bearer token in PILOT_ARTIFACTS_TOKEN_FILE or PILOT_ARTIFACTS_TOKEN. PILOT_ARTIFACTS_CHUNK_MB
 * switches uploads to chunks.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { fail } from '../core/errors.js';
import { Agent } from '../http/undici.js';
import type { BlobStore } from './blob-port.js';
import { FsBlobStore } from './blob-store.js';
import { OciBlobStore } from './oci-blob-store.js';
import type { OciCredentials, OciTarget } from './oci-registry.js';

/** The distribution spec's repository name rule (path components of lowercase alphanumerics and separators). */
const REPO = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** oci://… / oci+http://… → where the registry is; invalid_argument saying what is wrong. */
export function parseArtifactsUrl(text: string): OciTarget {
  const bad = (why: string) => fail.invalidArtifactsUrl({ text: text.replace(/\/\/[^/@]*@/, '//***@').slice(0, 200), why });
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw bad('not a URL (an OCI registry: oci://HOST/REPO; a shared folder: an absolute path)');
  }
  if (u.protocol !== 'oci:' && u.protocol !== 'oci+http:')
    throw bad('the scheme must be oci:// (HTTPS) or oci+http:// (plain HTTP, loopback only)');
  if (u.username !== '' || u.password !== '')
    throw bad('credentials do not go in the URL (it shows in `ps`): set PILOT_ARTIFACTS_USERNAME and PILOT_ARTIFACTS_PASSWORD_FILE');
  if (u.hostname === '') throw bad('no registry host');
  if (u.search !== '' || u.hash !== '') throw bad('no query or fragment');
  // URL() folds "/../" away: a path that needed folding is not the one the user meant to name.
  if (/\/\.\.?(\/|$)/.test(text.slice(text.indexOf('//') + 2))) throw bad('no "." or ".." in the repository path');
  const plain = u.protocol === 'oci+http:';
  if (plain && !isLoopback(u.hostname)) throw bad('plain HTTP only to a registry on this machine (127.0.0.0/8, ::1): use oci:// for HTTPS');
  const repo = decodeURIComponent(u.pathname.replace(/^\/+/, '').replace(/\/+$/, ''));
  if (repo === '') throw bad('no repository: add /REPO after the host');
  if (repo.length > 255 || !REPO.test(repo))
    throw bad(
      `repository ${JSON.stringify(repo.slice(0, 80))} is not a valid name (lowercase letters, digits, ".", "_", "-", components separated by "/")`,
    );
  const origin = `${plain ? 'http' : 'https'}://${u.host}`;
  return { origin, repo, display: `${plain ? 'oci+http' : 'oci'}://${u.host}/${repo}` };
}

function secretFrom(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const file = env[`${name}_FILE`];
  if (file !== undefined && file !== '') {
    try {
      return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      throw fail.artifactsSecretUnreadable({ name: `${name}_FILE`, file, code: (e as NodeJS.ErrnoException).code ?? String(e) });
    }
  }
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

/** Registry credentials from the environment (never from argv). */
export function credentialsFromEnv(env: NodeJS.ProcessEnv = process.env): OciCredentials {
  const username = env.PILOT_ARTIFACTS_USERNAME || undefined;
  const password = secretFrom(env, 'PILOT_ARTIFACTS_PASSWORD');
  const token = secretFrom(env, 'PILOT_ARTIFACTS_TOKEN');
  return { ...(username ? { username } : {}), ...(password !== undefined ? { password } : {}), ...(token !== undefined ? { token } : {}) };
}

/**
 * PILOT_ARTIFACTS_CHUNK_MB=N: upload in PATCH chunks of N MiB (1-1024) instead of one streamed PUT,
 * for a registry behind a proxy that limits a request's body (nginx `client_max_body_size`, a CDN).
 */
export function uploadChunksFromEnv(env: NodeJS.ProcessEnv = process.env): { chunked: true; chunkBytes: number } | undefined {
  const raw = env.PILOT_ARTIFACTS_CHUNK_MB?.trim();
  if (raw === undefined || raw === '') return undefined;
  const mb = Number(raw);
  if (!/^\d+$/.test(raw) || mb < 1 || mb > 1024)
    throw fail.invalidArtifactsUrl({ text: `PILOT_ARTIFACTS_CHUNK_MB=${raw.slice(0, 20)}`, why: 'a whole number of MiB from 1 to 1024' });
  return { chunked: true, chunkBytes: mb * 1024 * 1024 };
}

/** The blob store `spec` names (undefined or empty: the filesystem store under `home`). */
/** Check `--artifacts` / PILOT_ARTIFACTS before anything starts: throws invalidArtifactsUrl for a bad one. */
export function checkArtifactsSpec(spec: string): void {
  if (spec.trim() !== '' && !isAbsolute(spec.trim())) parseArtifactsUrl(spec.trim());
}

export function openBlobStore(spec: string | undefined, home: string, env: NodeJS.ProcessEnv = process.env): BlobStore {
  if (spec === undefined || spec.trim() === '') return new FsBlobStore(join(home, 'artifacts'));
  if (isAbsolute(spec.trim())) return new FsBlobStore(spec.trim());
  const target = parseArtifactsUrl(spec.trim());
  return new OciBlobStore({
    target,
    credentials: credentialsFromEnv(env),
    ...uploadChunksFromEnv(env),
    dispatcher: new Agent({ connections: 16, keepAliveTimeout: 10_000 }),
  });
}
