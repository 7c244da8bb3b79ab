/**
 * Port allocation for instances. Apps call `server.listen(PORT)`, which binds every interface, so a
 * port is free only if it is free on the wildcard address: two "nodes" on 127.0.0.2 and 127.0.0.3
 * of one test machine still share the port space. Ports are found by binding them, never guessed.
 */
import { createServer } from 'node:net';
import { fail } from '../core/errors.js';

/** A port handed out stays reserved this long: the app may take a while to bind it. */
const RESERVE_MS = 60_000;
const MAX_TRIES = 50;
/** Ports handed out by this process and not yet past RESERVE_MS (monotonic ms), shared by all agents in it. */
const reserved = new Map<number, number>();

type BindResult = { port: number } | { error: NodeJS.ErrnoException };

function bind(port: number, host: string): Promise<BindResult> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => resolve({ error }));
    server.listen({ port, host, exclusive: true }, () => {
      const addr = server.address();
      const bound = typeof addr === 'object' && addr !== null ? addr.port : port;
      server.close(() => resolve({ port: bound }));
    });
  });
}

/** Whether `port` can be bound on `host` now (false when in use or not permitted). */
export async function isPortFree(port: number, host = '0.0.0.0'): Promise<boolean> {
  const r = await bind(port, host);
  if ('port' in r) return true;
  if (r.error.code === 'EADDRINUSE' || r.error.code === 'EACCES') return false;
  throw r.error; // EADDRNOTAVAIL and the like: the host is wrong, not the port
}

/** A port that is free on `host` now and was not handed out by this process in the last minute. */
export async function allocatePort(host = '0.0.0.0'): Promise<number> {
  const now = performance.now();
  for (const [port, until] of reserved) if (until <= now) reserved.delete(port);
  for (let i = 0; i < MAX_TRIES; i++) {
    const r = await bind(0, host);
    if ('error' in r) throw r.error;
    // The kernel may hand the same port out again before the first app has bound it.
    if (reserved.has(r.port)) continue;
    // listen(PORT) without a host binds "::" (dual stack) where IPv6 exists; a socket on [::1]
    // or an IPv6-only one would not show on 0.0.0.0 but would still make the app fail.
    if (host === '0.0.0.0' && !(await freeOnIpv6(r.port))) continue;
    reserved.set(r.port, performance.now() + RESERVE_MS);
    return r.port;
  }
  throw fail.noFreePort({ host, maxTries: MAX_TRIES });
}

async function freeOnIpv6(port: number): Promise<boolean> {
  const r = await bind(port, '::');
  if ('port' in r) return true;
  // No IPv6 on this machine: then there is nothing there to clash with.
  return r.error.code === 'EAFNOSUPPORT' || r.error.code === 'EADDRNOTAVAIL';
}
