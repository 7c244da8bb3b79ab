/** `pilot certs` (list), `pilot certs set HOST --cert FILE --key FILE`, `pilot certs renew HOST`, `pilot certs rm HOST`. */
import { readFileSync } from 'node:fs';
import { fail } from '../core/errors.js';
import { apiClient, output, table, type GlobalOptions } from './context.js';

/** A certificate as the API shows it (control/certificates.ts CertificateView). */
interface CertRow {
  host: string;
  source: 'acme' | 'user';
  state: string;
  issuer?: string;
  notAfter?: string;
  lastError?: string;
  attempts: number;
  nextAttemptAt?: string;
}

function expiry(notAfter: string | undefined): string {
  if (notAfter === undefined) return '-';
  const days = Math.floor((Date.parse(notAfter) - Date.now()) / 86_400_000);
  return `${notAfter.slice(0, 10)} (${days < 0 ? 'expired' : `${days}d`})`;
}

function line(c: CertRow): string {
  const retry = c.state === 'failed' && c.nextAttemptAt ? `, retry at ${c.nextAttemptAt}` : '';
  return `${c.host}: ${c.state} (${c.source}${c.issuer ? `, ${c.issuer}` : ''}, expires ${expiry(c.notAfter)})${c.lastError ? `\n  last error: ${c.lastError}${retry}` : ''}`;
}

export async function certs(opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ certificates: CertRow[] }>('GET', '/api/v1/certs');
  output(opts, res, () =>
    res.certificates.length === 0
      ? 'no certificates (hosts get one through ACME when the server runs with PILOT_HTTPS_PORT and PILOT_ACME_DIRECTORY, or with `pilot certs set`)'
      : table(
          ['HOST', 'SOURCE', 'ISSUER', 'EXPIRES', 'STATE', 'LAST ERROR'],
          res.certificates.map((c) => [
            c.host,
            c.source,
            c.issuer ?? '-',
            expiry(c.notAfter),
            c.state,
            c.lastError ? `${c.lastError.slice(0, 120)}${c.nextAttemptAt ? ` (retry ${c.nextAttemptAt})` : ''}` : '-',
          ]),
        ),
  );
}

function readPem(file: string | undefined, flag: string): string {
  if (file === undefined) throw fail.certificateUploadInvalid({ problem: `${flag} FILE is required` });
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw fail.certificateUploadInvalid({ problem: `cannot read ${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` });
  }
}

export async function certsSet(host: string, opts: GlobalOptions & { cert?: string; key?: string }): Promise<void> {
  const body = { cert: readPem(opts.cert, '--cert'), key: readPem(opts.key, '--key') };
  const res = await apiClient(opts).call<{ certificate: CertRow }>('PUT', `/api/v1/certs/${encodeURIComponent(host)}`, body);
  output(opts, res, () => line(res.certificate));
}

export async function certsRenew(host: string, opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ certificate: CertRow }>('POST', `/api/v1/certs/${encodeURIComponent(host)}/renew`);
  output(opts, res, () => line(res.certificate));
}

export async function certsRm(host: string, opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ removed: string }>('DELETE', `/api/v1/certs/${encodeURIComponent(host)}`);
  output(opts, res, () => `removed the certificate of ${res.removed}`);
}
