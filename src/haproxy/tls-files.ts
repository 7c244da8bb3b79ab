/**
 * HTTPS and ACME for HAProxy: what the control plane sends (router/tls.ts `TlsBundle`) as files
 * HAProxy reads at a start or a reload, and as the Runtime API steps that bring a running HAProxy
 * to the same state without a reload.
 *
 *   cert-<host>.pem   the host's chain then its key (0600, in the 0700 folder)
 *   crt-list.txt      "<cert file> <host>" per line: the SNI filter is the host itself, so a
 *                     certificate is only ever served for the host it was given for (strict-sni:
 *                     another name, or none, fails the handshake, as on the embedded router)
 *   redirect.map      "<host> 1": plain HTTP is redirected (308), the host having a certificate
 *   hsts.map          "<host> <max-age>": Strict-Transport-Security on HTTPS answers
 *   acme.map          "<token> <key authorization>": HTTP-01 answers in progress
 *
 * Order of the steps: certificates added or renewed first, then the maps (a redirect never points
 * at a host whose certificate is not served yet), certificates removed last.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmodSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TlsBundle } from '../router/tls.js';
import { MAP_HOST_RE } from './config.js';
import { runtimeCommand, runtimeErrors, runtimePayload } from './runtime.js';

/** One Runtime API step: its errors (empty: applied). */
export type TlsStep = (adminSocket: string) => Promise<string[]>;

/** Hosts that become file names: a DNS name (no port, no IPv6 literal, no "/"). */
const FILE_HOST_RE = /^[a-z0-9][a-z0-9.-]{0,252}$/;
/** ACME HTTP-01 tokens and key authorizations are base64url (RFC 8555 §8.1, §8.3). */
const TOKEN_RE = /^[A-Za-z0-9_-]{1,256}$/;
const KEY_AUTH_RE = /^[A-Za-z0-9_.-]{1,512}$/;
/** Map commands per Runtime API connection (see RUNTIME_BATCH). */
const MAP_BATCH = 100;

/**
 * The PEM blocks of a text and nothing else: no blank lines, carriage returns or text between the
 * blocks (the Runtime API payload ends at a blank line; HAProxy reads the file as it is).
 */
export function tidyPem(pem: string): string {
  const out: string[] = [];
  let inside = false;
  for (const raw of pem.replace(/\r/g, '').split('\n')) {
    const l = raw.trim();
    if (!inside && /^-----BEGIN [A-Z0-9 ]+-----$/.test(l)) inside = true;
    if (inside && l !== '') out.push(l);
    if (inside && /^-----END [A-Z0-9 ]+-----$/.test(l)) inside = false;
  }
  return out.join('\n');
}

function writePrivate(file: string, text: string): void {
  writeFileSync(file + '.tmp', text, { mode: 0o600 });
  chmodSync(file + '.tmp', 0o600);
  renameSync(file + '.tmp', file);
}

/** Why an answer to a certificate command is a refusal, or undefined when `ok` matches it. */
function refused(command: string, answer: string, ok: RegExp): string[] {
  return ok.test(answer) ? [] : [`${command}: ${answer.trim().split('\n').slice(0, 2).join(' ') || 'no answer'}`];
}

function mapDiff(file: string, was: ReadonlyMap<string, string>, want: ReadonlyMap<string, string>, cmds: string[]): void {
  for (const [k, v] of want) {
    const old = was.get(k);
    if (old === undefined) cmds.push(`add map ${file} ${k} ${v}`);
    else if (old !== v) cmds.push(`set map ${file} ${k} ${v}`);
  }
  for (const k of was.keys()) if (!want.has(k)) cmds.push(`del map ${file} ${k}`);
}

/**
 * The certificate is readable and the key is its own: what HAProxy would refuse must not reach its
 * files (a reload from a file it cannot load would fail for every later change too).
 */
function usable(cert: string, key: string): boolean {
  try {
    return new X509Certificate(cert).checkPrivateKey(createPrivateKey(key));
  } catch {
    return false;
  }
}

const mapText = (m: ReadonlyMap<string, string>): string => [...m].map(([k, v]) => `${k} ${v}\n`).join('');

/** The certificates, policies and ACME answers HAProxy serves, kept in step with the control plane's. */
export class HaproxyTls {
  /** host → the PEM written to cert-<host>.pem (chain then key). */
  #certs = new Map<string, string>();
  #redirect = new Map<string, string>();
  #hsts = new Map<string, string>();
  #acme = new Map<string, string>();
  /** Certificate files to delete once HAProxy no longer uses them. */
  #gone: string[] = [];

  constructor(
    readonly dir: string,
    /** HAProxy binds an HTTPS port: without it only the ACME answers are used. */
    readonly https: boolean,
  ) {}

  certFile(host: string): string {
    return join(this.dir, `cert-${host}.pem`);
  }

  get #list(): string {
    return join(this.dir, 'crt-list.txt');
  }

  /** The hosts whose certificate is served. */
  hosts(): string[] {
    return [...this.#certs.keys()];
  }

  /**
   * Take `b` as the state to serve: certificate files written now, the other files at the next
   * writeFiles, and the Runtime API steps that bring a running HAProxy there. `skipped`: entries
   * that cannot go into HAProxy's files (named by host or token, never by their secret).
   */
  plan(b: TlsBundle): { steps: TlsStep[]; skipped: string[] } {
    const skipped: string[] = [];
    const acme = new Map<string, string>();
    for (const [token, keyAuth] of Object.entries(b.challenges ?? {})) {
      if (TOKEN_RE.test(token) && typeof keyAuth === 'string' && KEY_AUTH_RE.test(keyAuth)) acme.set(token, keyAuth);
      else skipped.push(`ACME answer for token ${JSON.stringify(token.slice(0, 64))}: not base64url`);
    }
    const certs = new Map<string, string>();
    const redirect = new Map<string, string>();
    const hsts = new Map<string, string>();
    if (this.https) {
      for (const c of b.certs ?? []) {
        const host = c.host.toLowerCase();
        const cert = tidyPem(c.cert);
        const key = tidyPem(c.key);
        const pem = `${cert}\n${key}\n`;
        if (!FILE_HOST_RE.test(host)) skipped.push(`certificate of ${JSON.stringify(host.slice(0, 64))}: HAProxy serves DNS names only`);
        else if (!usable(cert, key)) skipped.push(`certificate of ${host}: unreadable, or the key is not its own`);
        else certs.set(host, pem);
      }
      for (const [h, p] of Object.entries(b.policies ?? {})) {
        const host = h.toLowerCase();
        if (!MAP_HOST_RE.test(host)) continue;
        if (p.redirect === true && certs.has(host)) redirect.set(host, '1');
        const age = p.hstsMaxAge;
        if (typeof age === 'number' && Number.isInteger(age) && age > 0) hsts.set(host, String(age));
      }
    }

    const steps: TlsStep[] = [];
    const list = this.#list;
    for (const [host, pem] of certs) {
      const was = this.#certs.get(host);
      if (was === pem) continue;
      const file = this.certFile(host);
      writePrivate(file, pem);
      steps.push(async (admin) => {
        const errors: string[] = [];
        if (was === undefined) {
          errors.push(
            ...refused(
              'new ssl cert',
              await runtimeCommand(admin, [`new ssl cert ${file}`]),
              /New empty certificate store|already exists/i,
            ),
          );
        }
        errors.push(...refused('set ssl cert', await runtimePayload(admin, `set ssl cert ${file}`, pem), /Transaction (created|updated)/i));
        errors.push(...refused('commit ssl cert', await runtimeCommand(admin, [`commit ssl cert ${file}`]), /Success!/));
        if (was === undefined) {
          errors.push(
            ...refused('add ssl crt-list', await runtimePayload(admin, `add ssl crt-list ${list}`, `${file} ${host}`), /Success!/),
          );
        }
        return errors;
      });
    }
    const mapCmds: string[] = [];
    mapDiff(join(this.dir, 'acme.map'), this.#acme, acme, mapCmds);
    mapDiff(join(this.dir, 'redirect.map'), this.#redirect, redirect, mapCmds);
    mapDiff(join(this.dir, 'hsts.map'), this.#hsts, hsts, mapCmds);
    for (let i = 0; i < mapCmds.length; i += MAP_BATCH) {
      const batch = mapCmds.slice(i, i + MAP_BATCH);
      steps.push(async (admin) => runtimeErrors(await runtimeCommand(admin, batch)));
    }
    for (const host of this.#certs.keys()) {
      if (certs.has(host)) continue;
      const file = this.certFile(host);
      this.#gone.push(file);
      steps.push(async (admin) => [
        ...refused('del ssl crt-list', await runtimeCommand(admin, [`del ssl crt-list ${list} ${file}`]), /deleted/i),
        ...refused('del ssl cert', await runtimeCommand(admin, [`del ssl cert ${file}`]), /deleted/i),
      ]);
    }
    this.#certs = certs;
    this.#redirect = redirect;
    this.#hsts = hsts;
    this.#acme = acme;
    return { steps, skipped };
  }

  /** After the steps ran (or a reload took the files): the certificate files of removed hosts go. */
  afterSteps(): void {
    for (const f of this.#gone) if (![...this.#certs.keys()].some((h) => this.certFile(h) === f)) rmSync(f, { force: true });
    this.#gone = [];
  }

  /** crt-list.txt and the maps, through `write` (the router's atomic 0600 write). */
  writeFiles(write: (name: string, text: string) => void): void {
    write('crt-list.txt', [...this.#certs.keys()].map((h) => `${this.certFile(h)} ${h}\n`).join(''));
    write('redirect.map', mapText(this.#redirect));
    write('hsts.map', mapText(this.#hsts));
    write('acme.map', mapText(this.#acme));
  }
}
