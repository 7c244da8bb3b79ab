import { Registry } from 'prom-client';
import { startRouter } from './proxy.js';
import { RoutingTable } from './routing-table.js';
import { RouterMetrics } from './metrics.js';
import { routerContract } from './router-contract.js';
import { routerHttpsContract } from './router-contract-https.js';
import { AcmeChallenges, CertificateStore } from './tls.js';

// The same contract on the experimental fast engine (fast-path.ts): what it does not serve itself
// goes to node:http on the same socket, so every capability of the node engine holds.
routerContract(
  'embedded, fast engine',
  async () => {
    const table = new RoutingTable();
    const router = await startRouter({ host: '127.0.0.1', port: 0, table, metrics: new RouterMetrics(new Registry()), engine: 'fast' });
    return {
      url: router.url,
      apply: async (routes) => void table.set(routes),
      inflight: async (id) => router.inflight(id),
      close: () => router.close(),
    };
  },
  { refusesClWithTe: true, refusesAbsoluteForm: true, exactWeights: true, separateIdleTimeout: true, cutsChunkedOverMaxBody: true },
);

routerHttpsContract('embedded, fast engine', async () => {
  const table = new RoutingTable();
  const certs = new CertificateStore();
  const challenges = new AcmeChallenges();
  const router = await startRouter({ host: '127.0.0.1', port: 0, table, https: { port: 0, certs }, challenges, engine: 'fast' });
  return {
    url: router.url,
    httpsPort: router.httpsPort!,
    apply: async (routes) => void table.set(routes),
    setTls: async (b) => {
      certs.replace(b);
      challenges.replace(b.challenges);
    },
    close: () => router.close(),
  };
});
