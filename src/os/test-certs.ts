/**
 * Test support: a self-signed certificate and key (EC P-256) made by `openssl`, for the names given
 * (the first is the subject; IP addresses go in as IP: names, the rest as DNS: names), valid `days`
 * from now. Used by the HTTPS tests and bench/https.ts; nothing in production imports it.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';

export interface SelfSigned {
  readonly certFile: string;
  readonly keyFile: string;
  /** PEM text of the certificate and of its key. */
  readonly cert: string;
  readonly key: string;
}

export function selfSigned(dir: string, name: string, names: readonly string[], days = 10): SelfSigned {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  const sans = names.map((n) => (isIP(n) !== 0 ? `IP:${n}` : `DNS:${n}`)).join(',');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      String(days),
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-subj',
      `/CN=${names[0]}`,
      '-addext',
      `subjectAltName=${sans}`,
    ],
    { stdio: 'ignore' },
  );
  return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}
