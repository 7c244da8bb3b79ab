/**
 * `pilot certs`: the HTTPS certificates of the apps' hosts (control/certificates.ts) — list, give
 * one of your own (checked: 400 naming what is wrong), renew now, drop.
 */
import type { FastifyInstance } from 'fastify';
import { fail } from '../core/errors.js';
import type { CertificateManager } from './certificates.js';

const HOST = /^[a-z0-9*](?:[a-z0-9.-]{0,251}[a-z0-9])?$/;
const MAX_PEM = 64 * 1024;

function hostParam(raw: string): string {
  const host = raw.toLowerCase();
  if (!HOST.test(host)) throw fail.certificateUploadInvalid({ problem: `"${raw.slice(0, 80)}" is not a host name` });
  return host;
}

function pemField(body: unknown, name: 'cert' | 'key'): string {
  const v = (body as Record<string, unknown> | null | undefined)?.[name];
  if (typeof v !== 'string' || v.length === 0) throw fail.certificateUploadInvalid({ problem: `"${name}" is missing (a PEM text)` });
  if (v.length > MAX_PEM) throw fail.certificateUploadInvalid({ problem: `"${name}" is longer than ${MAX_PEM} bytes` });
  return v;
}

export function registerCertRoutes(app: FastifyInstance, deps: { certs: CertificateManager }): void {
  const { certs } = deps;
  app.get('/api/v1/certs', async () => ({ certificates: await certs.list() }));
  app.put<{ Params: { host: string } }>('/api/v1/certs/:host', async (req) => {
    const host = hostParam(req.params.host);
    return { certificate: await certs.setUserCertificate(host, pemField(req.body, 'cert'), pemField(req.body, 'key')) };
  });
  app.post<{ Params: { host: string } }>('/api/v1/certs/:host/renew', async (req) => {
    const host = hostParam(req.params.host);
    await certs.view(host); // 404 for a host Pilot does not know
    return { certificate: await certs.issue(host) };
  });
  app.delete<{ Params: { host: string } }>('/api/v1/certs/:host', async (req) => {
    const host = hostParam(req.params.host);
    if (!(await certs.remove(host))) throw fail.certificateNotFound({ host });
    return { removed: host };
  });
}
