/**
 * HTTPS certificates of the apps' hosts, owned by the control plane: issued through ACME (HTTP-01,
 * answered by the router from `challenges`), renewed well before expiry, retried with back-off (longer
 * after a rate limit), or given by the user (checked at upload). Every certificate and key, and the
 * ACME account key, is stored sealed (store/secret-box.ts); `certs` is what the router serves.
 */
import type acmeNs from 'acme-client';
import https from 'node:https';
import { fail, PilotError } from '../core/errors.js';
import { restartDelayMs } from '../core/backoff.js';
import type { CertificateRecord, Store } from '../store/store.js';
import type { SecretBox } from '../store/secret-box.js';
import { certificateFacts, checkCertificate, type AcmeChallenges, type CertificateStore } from '../router/tls.js';

/**
 * acme-client is loaded when a certificate is first ordered, not at start: with axios under it, it
 * costs a server that never uses ACME about 20 MB of RSS (measured: bare node 43 MB, with it 69 MB).
 */
let acmeLoading: Promise<typeof acmeNs> | undefined;
function loadAcme(): Promise<typeof acmeNs> {
  acmeLoading ??= import('acme-client').then((m) => m.default);
  return acmeLoading;
}

export interface AcmeSettings {
  /** The ACME directory, e.g. https://acme-v02.api.letsencrypt.org/directory. */
  readonly directoryUrl: string;
  /** Contact e-mail given to the CA (optional). */
  readonly email?: string;
  /** Extra CA certificates (PEM) trusted for the ACME server's own HTTPS (a test CA such as pebble). */
  readonly caPem?: string;
  /** How often the client polls a pending challenge or order. Default 2 s. */
  readonly pollMs?: number;
}

export interface CertificateManagerOptions {
  readonly store: Store;
  /**
   * The store the automatic pass (`want`, `tick` and the issues it starts) writes through: the
   * leader's, fenced with its token (store/fence.ts), so a leader paused past its lease and resumed
   * never records a certificate decided before. Absent: `store` (one process). What the API asks
   * (`pilot certs issue|set|rm`) is a user's write and goes through `store` on any replica.
   */
  readonly leaderStore?: Store;
  readonly box: SecretBox;
  readonly certs: CertificateStore;
  readonly challenges: AcmeChallenges;
  /** Absent: no automatic certificates (user-provided ones only). */
  readonly acme?: AcmeSettings;
  /** Renew when less than this is left, or a third of the lifetime if that is shorter. Default 30 days. */
  readonly renewBeforeMs?: number;
  /** First retry after a failure; doubles up to `retryCapMs`. Defaults 1 min and 6 h. */
  readonly retryBaseMs?: number;
  readonly retryCapMs?: number;
  /** Wait at least this long after the CA says "rate limited". Default 1 h. */
  readonly rateLimitedMs?: number;
  readonly now?: () => number;
  readonly log?: (line: string) => void;
  /**
   * Resolves once the routers in their own processes have the ACME answers just set (the CA may
   * reach any of them); awaited before the CA is asked to validate. Absent: only `challenges`.
   */
  readonly challengesDelivered?: () => Promise<unknown>;
}

/** A certificate as `pilot certs` shows it: nothing sealed. */
export interface CertificateView {
  readonly host: string;
  readonly source: 'acme' | 'user';
  readonly state: 'pending' | 'valid' | 'failed';
  readonly issuer?: string;
  readonly notAfter?: string;
  readonly lastError?: string;
  readonly attempts: number;
  readonly nextAttemptAt?: string;
}

const DAY = 86_400_000;

/** The ACME error type of a failure, when the CA said one (acme-client puts it in the message or `type`). */
function acmeProblem(err: unknown): { rateLimited: boolean; message: string } {
  const e = err as { message?: unknown; type?: unknown; detail?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const type = typeof e?.type === 'string' ? e.type : '';
  // acme-client keeps only the problem's detail; Let's Encrypt's rate-limit details say "too many …".
  const rateLimited = type.endsWith(':rateLimited') || /rate ?limit|too many/i.test(message);
  return { rateLimited, message: message.split('\n')[0]!.slice(0, 500) };
}

export class CertificateManager {
  readonly #o: CertificateManagerOptions;
  readonly #now: () => number;
  #client: acmeNs.Client | undefined;
  /** Hosts being issued now (one attempt per host at a time). */
  readonly #busy = new Set<string>();

  constructor(o: CertificateManagerOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  /**
   * Serve exactly the stored certificates (at start-up, and on every pass with several replicas: one
   * set, renewed or removed through another replica is served, renewed or removed here too). A
   * record that cannot be opened is logged and skipped; a certificate being issued here is kept.
   */
  async load(): Promise<void> {
    const stored = new Set<string>();
    for (const rec of await this.#o.store.listCertificates()) {
      if (rec.certSealed === undefined || rec.keySealed === undefined) continue;
      stored.add(rec.host);
      try {
        this.#o.certs.set(rec.host, this.#o.box.open(rec.certSealed), this.#o.box.open(rec.keySealed));
      } catch (err) {
        this.#o.log?.(`certificates: cannot serve the stored certificate of ${rec.host}: ${(err as Error).message}`);
      }
    }
    for (const host of this.#o.certs.hosts()) if (!stored.has(host) && !this.#busy.has(host)) this.#o.certs.delete(host);
  }

  /**
   * Tell every replica (the event feed; NOTIFY on PostgreSQL) that a host's stored certificate
   * changed, so each serves the stored set again at once rather than at its next pass. Appended
   * after the write: a crash between the two leaves the change to that next pass.
   */
  async #changed(store: Store, host: string, change: 'issued' | 'set' | 'removed'): Promise<void> {
    await store.appendEvent({ kind: 'certificate.changed', app: undefined, time: this.#now(), payload: { host, change } });
  }

  /** Where the automatic pass writes (see `leaderStore`). */
  get #passStore(): Store {
    return this.#o.leaderStore ?? this.#o.store;
  }

  /** Hosts that should have an automatic certificate: each one without a record gets a pending one. */
  async want(hosts: readonly string[]): Promise<void> {
    for (const h of hosts) {
      const host = h.toLowerCase();
      if ((await this.#passStore.getCertificate(host)) !== undefined) continue;
      await this.#passStore.putCertificate({ host, source: 'acme', state: 'pending', attempts: 0, updatedAt: this.#now() });
    }
  }

  /** Is this record's certificate due for issue or renewal now (ignoring the back-off)? */
  #due(rec: CertificateRecord): boolean {
    if (rec.source !== 'acme') return false;
    if (rec.notAfter === undefined || rec.certSealed === undefined) return true;
    let lifetime = Infinity;
    try {
      const facts = certificateFacts(this.#o.box.open(rec.certSealed), rec.host);
      lifetime = facts.notAfter.getTime() - facts.notBefore.getTime();
    } catch {
      return true;
    }
    const before = Math.min(this.#o.renewBeforeMs ?? 30 * DAY, lifetime / 3);
    return rec.notAfter - this.#now() <= before;
  }

  /** One pass: issue or renew every ACME host that is due and whose back-off has passed. */
  async tick(): Promise<void> {
    if (this.#o.acme === undefined) return;
    for (const rec of await this.#passStore.listCertificates()) {
      if (!this.#due(rec)) continue;
      if (rec.nextAttemptAt !== undefined && rec.nextAttemptAt > this.#now()) continue;
      await this.#issue(rec.host, this.#passStore);
    }
  }

  /**
   * Obtain a certificate for host now (a renewal when it has one). On failure the record keeps any
   * certificate it had (still served), with the error and the time of the next attempt.
   */
  issue(host: string): Promise<CertificateView> {
    return this.#issue(host, this.#o.store);
  }

  async #issue(host: string, store: Store): Promise<CertificateView> {
    const settings = this.#o.acme;
    if (settings === undefined) throw fail.acmeNotConfigured({ host });
    if (this.#busy.has(host)) return this.view(host);
    this.#busy.add(host);
    const before = (await store.getCertificate(host)) ?? {
      host,
      source: 'acme' as const,
      state: 'pending' as const,
      attempts: 0,
      updatedAt: this.#now(),
    };
    const tokens: string[] = [];
    try {
      const client = await this.#acmeClient(settings);
      const acme = await loadAcme();
      const [key, csr] = await acme.crypto.createCsr({ commonName: host, altNames: [host] });
      const pem = await client.auto({
        csr,
        ...(settings.email ? { email: settings.email } : {}),
        termsOfServiceAgreed: true,
        challengePriority: ['http-01'],
        // The router answers on whatever port it listens on; the CA checks port 80 of the host.
        skipChallengeVerification: true,
        challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
          tokens.push(challenge.token);
          this.#o.challenges.set(challenge.token, keyAuthorization);
          await this.#o.challengesDelivered?.();
        },
        challengeRemoveFn: async (_authz, challenge) => {
          this.#o.challenges.delete(challenge.token);
        },
      });
      const keyPem = key.toString();
      const facts = checkCertificate(host, pem, keyPem, new Date(this.#now()));
      // Stored first: a write refused (a stale leader) serves nothing new either.
      await store.putCertificate({
        host,
        source: 'acme',
        certSealed: this.#o.box.seal(pem),
        keySealed: this.#o.box.seal(keyPem),
        issuer: facts.issuer,
        notAfter: facts.notAfter.getTime(),
        state: 'valid',
        attempts: 0,
        updatedAt: this.#now(),
      });
      this.#o.certs.set(host, pem, keyPem);
      await this.#changed(store, host, 'issued');
      this.#o.log?.(`certificates: ${host}: issued by ${facts.issuer}, valid until ${facts.notAfter.toISOString()}`);
    } catch (err) {
      const { rateLimited, message } = err instanceof PilotError ? { rateLimited: false, message: err.message } : acmeProblem(err);
      const attempts = before.attempts + 1;
      const delay = Math.max(
        restartDelayMs(attempts, this.#o.retryBaseMs ?? 60_000, this.#o.retryCapMs ?? 6 * 3600_000),
        rateLimited ? (this.#o.rateLimitedMs ?? 3600_000) : 0,
      );
      await store.putCertificate({
        ...before,
        source: 'acme',
        // A certificate still in force keeps being served; the failure is in lastError.
        state: 'failed',
        lastError: rateLimited ? `rate limited by the CA: ${message}` : message,
        attempts,
        nextAttemptAt: this.#now() + delay,
        updatedAt: this.#now(),
      });
      this.#o.log?.(`certificates: ${host}: attempt ${attempts} failed (${message}); next in ${Math.round(delay / 1000)} s`);
    } finally {
      for (const t of tokens) this.#o.challenges.delete(t);
      this.#busy.delete(host);
    }
    return this.view(host);
  }

  /** Use the user's certificate and key for host (checked first: 400 naming what is wrong). */
  async setUserCertificate(host: string, certPem: string, keyPem: string): Promise<CertificateView> {
    const h = host.toLowerCase();
    const facts = checkCertificate(h, certPem, keyPem, new Date(this.#now()));
    this.#o.certs.set(h, certPem, keyPem);
    await this.#o.store.putCertificate({
      host: h,
      source: 'user',
      certSealed: this.#o.box.seal(certPem),
      keySealed: this.#o.box.seal(keyPem),
      issuer: facts.issuer,
      notAfter: facts.notAfter.getTime(),
      state: 'valid',
      attempts: 0,
      updatedAt: this.#now(),
    });
    await this.#changed(this.#o.store, h, 'set');
    return this.view(h);
  }

  /** Forget host's certificate (served no more; an ACME host gets a fresh one at the next want/tick). */
  async remove(host: string): Promise<boolean> {
    const h = host.toLowerCase();
    this.#o.certs.delete(h);
    const removed = await this.#o.store.deleteCertificate(h);
    if (removed) await this.#changed(this.#o.store, h, 'removed');
    return removed;
  }

  async list(): Promise<CertificateView[]> {
    return (await this.#o.store.listCertificates()).map(viewOf);
  }

  async view(host: string): Promise<CertificateView> {
    const rec = await this.#o.store.getCertificate(host);
    if (rec === undefined) throw fail.certificateNotFound({ host });
    return viewOf(rec);
  }

  async #acmeClient(s: AcmeSettings): Promise<acmeNs.Client> {
    if (this.#client) return this.#client;
    const acme = await loadAcme();
    if (s.caPem) acme.axios.defaults.httpsAgent = new https.Agent({ ca: s.caPem, keepAlive: true });
    let sealed = await this.#o.store.getAcmeAccountKey(s.directoryUrl);
    if (sealed === undefined) {
      const key = await acme.crypto.createPrivateEcdsaKey();
      sealed = this.#o.box.seal(key.toString());
      await this.#o.store.putAcmeAccountKey(s.directoryUrl, sealed, this.#now());
    }
    const poll = s.pollMs ?? 2_000;
    this.#client = new acme.Client({
      directoryUrl: s.directoryUrl,
      accountKey: this.#o.box.open(sealed),
      backoffMin: poll,
      backoffMax: Math.max(poll, 10_000),
      backoffAttempts: 10,
    });
    return this.#client;
  }
}

function viewOf(r: CertificateRecord): CertificateView {
  return {
    host: r.host,
    source: r.source,
    state: r.state,
    ...(r.issuer !== undefined ? { issuer: r.issuer } : {}),
    ...(r.notAfter !== undefined ? { notAfter: new Date(r.notAfter).toISOString() } : {}),
    ...(r.lastError !== undefined ? { lastError: r.lastError } : {}),
    attempts: r.attempts,
    ...(r.nextAttemptAt !== undefined ? { nextAttemptAt: new Date(r.nextAttemptAt).toISOString() } : {}),
  };
}
