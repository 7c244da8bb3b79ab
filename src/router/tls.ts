/**
 * HTTPS in the router: the certificates it serves (one per host, chosen by SNI), the ACME HTTP-01
 * answers it gives for the control plane, and the per-host HTTPS policy (redirect, HSTS).
 * The control plane owns issuing and storing certificates (control/certificates.ts); the router only
 * serves what it is given.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import tls, { type SecureContext } from 'node:tls';
import { fail } from '../core/errors.js';

/** TLS 1.2 and 1.3 only; TLS 1.2 limited to forward-secret AEAD suites (Mozilla's "intermediate"). */
export const TLS_MIN_VERSION = 'TLSv1.2';
export const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** What a certificate says about itself, read from its PEM (the leaf first, then its chain). */
export interface CertificateFacts {
  readonly subject: string;
  readonly issuer: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** DNS names in the subjectAltName. */
  readonly names: readonly string[];
}

function leafOf(certPem: string, host: string): X509Certificate {
  try {
    return new X509Certificate(certPem);
  } catch (err) {
    throw fail.certificateUnreadable({ host, what: 'certificate' }, { cause: err });
  }
}

/** Facts of a PEM chain's leaf; throws certificateUnreadable when it is not a certificate. */
export function certificateFacts(certPem: string, host = ''): CertificateFacts {
  const leaf = leafOf(certPem, host);
  const names = (leaf.subjectAltName ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase());
  const cn = /CN=([^\n,]+)/.exec(leaf.issuer)?.[1];
  return {
    subject: leaf.subject.replace(/\n/g, ', '),
    issuer: cn ?? leaf.issuer.replace(/\n/g, ', '),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    names,
  };
}

/**
 * A user-provided certificate and key for `host`, checked before it is accepted: both readable,
 * the key the certificate's own, the host among the certificate's names, not expired and already
 * valid. Throws the catalogue error naming what is wrong (400).
 */
export function checkCertificate(host: string, certPem: string, keyPem: string, now = new Date()): CertificateFacts {
  const leaf = leafOf(certPem, host);
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw fail.certificateUnreadable({ host, what: 'private key' }, { cause: err });
  }
  if (key.type !== 'private' || !leaf.checkPrivateKey(key)) throw fail.certificateKeyMismatch({ host });
  const facts = certificateFacts(certPem, host);
  if (leaf.checkHost(host) === undefined) {
    throw fail.certificateWrongHost({ host, names: facts.names.length > 0 ? facts.names.join(', ') : facts.subject });
  }
  if (facts.notAfter.getTime() <= now.getTime()) {
    throw fail.certificateExpired({ host, notAfter: facts.notAfter.toISOString() });
  }
  if (facts.notBefore.getTime() > now.getTime()) {
    throw fail.certificateNotYetValid({ host, notBefore: facts.notBefore.toISOString() });
  }
  return facts;
}

/** How a host is served over HTTPS beyond having a certificate. */
export interface HttpsPolicy {
  /** Answer plain-HTTP requests with a 308 to https:// (never the ACME challenge path). */
  readonly redirect?: boolean;
  /** Strict-Transport-Security max-age in seconds on HTTPS answers; absent or 0: no header. */
  readonly hstsMaxAge?: number;
}

interface Served {
  readonly context: SecureContext;
  readonly facts: CertificateFacts;
  readonly certPem: string;
  readonly keyPem: string;
}

/**
 * What the control plane sends a router in its own process (router process, node router) so it
 * serves HTTPS as the embedded router does: each host's certificate chain and key, each host's
 * policy, and the ACME HTTP-01 answers in progress (whichever router the CA reaches answers).
 * Secret: it travels only in the authenticated sync answer and is saved 0600 (never logged).
 */
export interface TlsBundle {
  readonly certs: readonly { readonly host: string; readonly cert: string; readonly key: string }[];
  readonly policies: Readonly<Record<string, HttpsPolicy>>;
  readonly challenges: Readonly<Record<string, string>>;
}

/**
 * The certificates the router serves, by host (lowercase, exact; a wildcard certificate is stored
 * under each host it is given for), and the HTTPS policy of each host. Set by the control plane.
 */
export class CertificateStore {
  readonly #served = new Map<string, Served>();
  readonly #policies = new Map<string, HttpsPolicy>();
  readonly #listeners = new Set<() => void>();

  /** Call `fn` after every change of a certificate or of the policies. Returns the unsubscribe. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #changed(): void {
    for (const fn of this.#listeners) fn();
  }

  /** Serve certPem (leaf then chain) with keyPem for host. Throws certificateUnreadable / KeyMismatch. */
  set(host: string, certPem: string, keyPem: string): void {
    const h = host.toLowerCase();
    const had = this.#served.get(h);
    if (had?.certPem === certPem && had.keyPem === keyPem) return;
    const facts = certificateFacts(certPem, h);
    let context: SecureContext;
    try {
      context = tls.createSecureContext({ cert: certPem, key: keyPem, minVersion: TLS_MIN_VERSION, ciphers: TLS_CIPHERS });
    } catch (err) {
      throw fail.certificateKeyMismatch({ host: h }, { cause: err });
    }
    this.#served.set(h, { context, facts, certPem, keyPem });
    this.#changed();
  }

  delete(host: string): void {
    if (this.#served.delete(host.toLowerCase())) this.#changed();
  }

  /** Replace every host's policy at once (hosts not named get none). */
  setPolicies(policies: ReadonlyMap<string, HttpsPolicy>): void {
    const before = JSON.stringify([...this.#policies]);
    this.#policies.clear();
    for (const [h, p] of policies) this.#policies.set(h.toLowerCase(), p);
    if (JSON.stringify([...this.#policies]) !== before) this.#changed();
  }

  /** Every certificate (chain and key) and policy, as sent to the routers in their own processes. */
  export(): Pick<TlsBundle, 'certs' | 'policies'> {
    return {
      certs: [...this.#served]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([host, s]) => ({ host, cert: s.certPem, key: s.keyPem })),
      policies: Object.fromEntries([...this.#policies].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
    };
  }

  /**
   * Serve exactly the certificates and policies of `b` (a router following the control plane):
   * hosts not in it are served no more; an entry that cannot be used (unreadable, key mismatch)
   * is left out and named in the result, the others are served. Nothing secret is in the result.
   */
  replace(b: Pick<TlsBundle, 'certs' | 'policies'>): { host: string; problem: string }[] {
    const problems: { host: string; problem: string }[] = [];
    const keep = new Set<string>();
    for (const c of b.certs) {
      try {
        this.set(c.host, c.cert, c.key);
        keep.add(c.host.toLowerCase());
      } catch (err) {
        problems.push({ host: c.host, problem: (err as Error).message });
      }
    }
    for (const h of [...this.#served.keys()]) if (!keep.has(h)) this.delete(h);
    this.setPolicies(new Map(Object.entries(b.policies)));
    return problems;
  }

  context(host: string): SecureContext | undefined {
    return this.#served.get(host.toLowerCase())?.context;
  }

  facts(host: string): CertificateFacts | undefined {
    return this.#served.get(host.toLowerCase())?.facts;
  }

  has(host: string): boolean {
    return this.#served.has(host.toLowerCase());
  }

  hosts(): string[] {
    return [...this.#served.keys()];
  }

  policy(host: string): HttpsPolicy | undefined {
    return this.#policies.get(host.toLowerCase());
  }
}

/** Token → key authorization of the ACME HTTP-01 challenges in progress. */
export class AcmeChallenges {
  readonly #answers = new Map<string, string>();
  readonly #listeners = new Set<() => void>();

  /** Call `fn` after every change. Returns the unsubscribe. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  set(token: string, keyAuthorization: string): void {
    this.#answers.set(token, keyAuthorization);
    for (const fn of this.#listeners) fn();
  }

  delete(token: string): void {
    if (this.#answers.delete(token)) for (const fn of this.#listeners) fn();
  }

  /** Every answer, by token (sent to the routers in their own processes). */
  export(): Record<string, string> {
    return Object.fromEntries(this.#answers);
  }

  /** Give exactly these answers (a router following the control plane). */
  replace(answers: Readonly<Record<string, string>>): void {
    this.#answers.clear();
    for (const [t, k] of Object.entries(answers)) this.#answers.set(t, k);
    for (const fn of this.#listeners) fn();
  }

  get(token: string): string | undefined {
    return this.#answers.get(token);
  }
}

export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/** The host of a Host header value: lowercase, without its port (IPv6 brackets kept). */
export function hostOnly(hostHeader: string): string {
  const h = hostHeader.toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end === -1 ? h : h.slice(0, end + 1);
  }
  const colon = h.indexOf(':');
  return colon === -1 ? h : h.slice(0, colon);
}
