import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { routerContract } from '../router/router-contract.js';
import { routerHttpsContract } from '../router/router-contract-https.js';
import { CHUNKED_CHECK_MAX_BYTES } from './config.js';
import { HaproxyRouter } from './haproxy-router.js';

routerContract(
  'haproxy',
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pilot-haproxy-'));
    const router = await HaproxyRouter.start({ dir, host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }) });
    return {
      url: router.url,
      apply: (routes) => router.apply(routes),
      inflight: async (id) => (await router.inflightAll())[id] ?? 0,
      close: async () => {
        await router.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
  // HAProxy follows RFC 9112 on CL+TE (drops Content-Length, reads chunked) and accepts
  // absolute-form targets (routing by Host); its weights are per server (roundrobin), within ±8.
  // HAProxy 2.6 has one server timeout per request (no separate idle timeout after the headers),
  // and keeps no running total of a streamed body: a chunked one is counted in its buffer, so
  // only for a maxBody up to CHUNKED_CHECK_MAX_BYTES (config.ts); over it, streamed whole.
  {
    refusesClWithTe: false,
    refusesAbsoluteForm: false,
    exactWeights: false,
    separateIdleTimeout: false,
    cutsChunkedOverMaxBody: true,
    chunkedMaxBodyUpTo: CHUNKED_CHECK_MAX_BYTES,
  },
);

routerHttpsContract('haproxy', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-haproxy-https-'));
  const router = await HaproxyRouter.start({ dir, host: '127.0.0.1', port: 0, https: { port: 0 }, log: pino({ level: 'silent' }) });
  return {
    url: router.url,
    httpsPort: router.httpsPort!,
    apply: (routes) => router.apply(routes),
    setTls: (b) => router.setTls(b),
    close: async () => {
      await router.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
