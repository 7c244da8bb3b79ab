/**
 * Container registry addresses. A registry is configured by URL (`http://127.0.0.1:5000`); Docker
 * names images by the bare address (`127.0.0.1:5000/shop@sha256:…`). Pure.
 */
import { type PilotError, fail } from './errors.js';

export interface RegistryAddress {
  /** Normalized: scheme://host[:port], lowercase host, no trailing slash. */
  readonly url: string;
  /** host[:port], as it appears in image references. */
  readonly address: string;
}

const HOST =
  /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$|^\d{1,3}(?:\.\d{1,3}){3}$|^\[[0-9a-f:.]+\]$/;

/** Parse a registry URL given by a user; throws bad_request saying what is wrong. */
export function parseRegistryUrl(input: string): RegistryAddress {
  const text = input.trim();
  const bad = (why: string): PilotError => fail.invalidRegistryUrl({ text: text.slice(0, 200), why });
  if (!/^https?:\/\//i.test(text)) throw bad('must start with http:// or https://');
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw bad('is not a URL');
  }
  if (u.username || u.password) throw bad('must not hold a user name or password (use --username and --password-stdin)');
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash)
    throw bad('must be only scheme, host and port (no path, query or fragment)');
  const host = u.hostname.toLowerCase();
  if (!HOST.test(host)) throw bad('has an invalid host name');
  const address = u.port ? `${host}:${u.port}` : host;
  return { url: `${u.protocol}//${address}`, address };
}

/** The registry address of an image reference (`host:port/repo@sha256:…`), or undefined for Docker Hub-style names. */
export function registryOfRef(ref: string): string | undefined {
  const first = ref.split('/')[0]!;
  if (!ref.includes('/')) return undefined;
  return first.includes('.') || first.includes(':') || first === 'localhost' ? first.toLowerCase() : undefined;
}
