import type { ErrorEntries } from './entry.js';

const HOST_HINT = 'Every app answers at <app>.localhost and at the hosts in its pilot.yaml; list apps with `pilot apps`.';
const upstreamMessage = (p: { app: string; what: string; code: string }): string =>
  `pilot: an instance of app "${p.app}" ${p.what} (${p.code})`;
const upstreamHint = (p: { app: string }): string => `Check \`pilot logs ${p.app}\`; the request may be retried.`;

/** Errors raised in src/router/. */
export const routerErrors = {
  routingTableRejected: {
    code: 'bad_request',
    message: (p: { message: string }) => `routing table rejected: ${p.message}`,
    hint: 'This is a bug in the control plane: the table it computed is inconsistent. The previous table stays in force.',
  },
  invalidTrustedProxy: {
    code: 'bad_request',
    message: (p: { source: string; item: string }) => `${p.source}: ${JSON.stringify(p.item)} is not an IP address or CIDR`,
    hint: 'List addresses or CIDRs separated by commas, e.g. 10.0.0.0/8,127.0.0.1,::1.',
  },
  noReadyInstance: {
    code: 'bad_gateway',
    message: (p: { app: string }) => `pilot: no ready instance of app "${p.app}"`,
    hint: (p: { app: string }) =>
      `Check \`pilot status ${p.app}\`: its instances may be starting, failing their readiness probe, or scaled to 0.`,
  },
  upgradeNotWebSocket: {
    code: 'not_implemented',
    message: (p: { protocol: string }) => `pilot: only WebSocket upgrades are passed through, not "${p.protocol}"`,
    hint: 'Send the request without an Upgrade header (curl: use --http1.1 instead of --http2 for http:// URLs).',
  },
  invalidRouterEngine: {
    code: 'bad_request',
    message: (p: { value: string }) => `pilot: PILOT_ROUTER_ENGINE="${p.value}" is not a router engine`,
    hint: 'Set PILOT_ROUTER_ENGINE to "node" (the default) or "fast" (experimental), or unset it.',
  },
  requestTargetNotPath: {
    code: 'bad_request',
    message: (p: { url: string }) => `pilot: request target "${p.url}" is not a path`,
    hint: 'Send origin-form requests ("GET /path"), with the app\'s host in the Host header.',
  },
  noHostHeader: {
    code: 'not_found',
    message: 'pilot: the request has no Host header, and Pilot routes by host',
    hint: HOST_HINT,
  },
  unknownHost: {
    code: 'not_found',
    message: (p: { host: string }) => `pilot: no app serves host "${p.host}"`,
    hint: HOST_HINT,
  },
  upstreamTimeout: {
    code: 'upstream_timeout',
    message: upstreamMessage,
    hint: upstreamHint,
  },
  bodyTooLarge: {
    code: 'too_large',
    message: (p: { app: string; limit: number }) => `pilot: the request body is larger than app "${p.app}" accepts (${p.limit} bytes)`,
    hint: (p: { app: string }) => `Send a smaller body, or raise http.maxBody in the pilot.yaml of app "${p.app}" and deploy it.`,
  },
  upstreamFailed: {
    code: 'bad_gateway',
    message: upstreamMessage,
    hint: upstreamHint,
  },
  haproxyMissing: {
    code: 'unavailable',
    message: (p: { bin: string }) => `router "haproxy" is configured, but HAProxy is not installed (no ${p.bin})`,
    hint: 'Install it (Debian/Ubuntu: `apt-get install haproxy`, 2.6 or newer), set PILOT_HAPROXY_BIN to its path, or start without `--router haproxy`.',
  },
  haproxyTrafficMode: {
    code: 'invalid_argument',
    message: (p: { value: string }) => `PILOT_HAPROXY_TRAFFIC=${JSON.stringify(p.value)} is not a way to take HAProxy's traffic figures`,
    hint: "Use log (a line per request: exact codes and latencies; the default), stats (HAProxy's counters every 2 s: cheaper, status classes and average latencies), auto (the log while two revisions of an app share its traffic, the counters otherwise) or off (no figures: no canary analysis, no autoscaling by req/s).",
  },
  haproxyStartFailed: {
    code: 'internal',
    message: (p: { output: string }) => `HAProxy did not start: ${p.output}`,
    hint: 'Is the router port free (`--router-port`)? The log of the router process ($PILOT_HOME/logs/router.log) has the rest.',
  },
  haproxyConfigRejected: {
    code: 'internal',
    message: (p: { output: string }) => `HAProxy rejected the configuration Pilot generated: ${p.output}`,
    hint: 'This is a bug in Pilot (src/haproxy/config.ts); the previous configuration stays in force.',
  },
  trafficWindowRefused: {
    code: 'bad_request',
    // The control plane asks with a window it has checked: no hint for a user here.
    message: (p: { problem: string }) => p.problem,
  },
  certificateUnreadable: {
    code: 'bad_request',
    message: (p: { host: string; what: string }) => `the ${p.what} given for host "${p.host}" is not a readable PEM ${p.what}`,
    hint: 'Give the certificate (leaf first, then its chain) and its private key as PEM files, e.g. `pilot certs set HOST --cert fullchain.pem --key privkey.pem`.',
  },
  certificateKeyMismatch: {
    code: 'bad_request',
    message: (p: { host: string }) => `the private key given for host "${p.host}" does not belong to its certificate`,
    hint: 'Give the key the certificate was issued for (compare `openssl x509 -noout -pubkey -in CERT` with `openssl pkey -pubout -in KEY`).',
  },
  certificateWrongHost: {
    code: 'bad_request',
    message: (p: { host: string; names: string }) => `the certificate given for host "${p.host}" does not cover it (it names ${p.names})`,
    hint: 'Give a certificate whose subjectAltName lists the host (or a matching wildcard).',
  },
  certificateExpired: {
    code: 'bad_request',
    message: (p: { host: string; notAfter: string }) => `the certificate given for host "${p.host}" expired at ${p.notAfter}`,
    hint: 'Renew it with its issuer, or drop it and let Pilot obtain one automatically through ACME.',
  },
  certificateNotYetValid: {
    code: 'bad_request',
    message: (p: { host: string; notBefore: string }) => `the certificate given for host "${p.host}" is not valid before ${p.notBefore}`,
    hint: "Check this machine's clock, or wait until the certificate's validity starts.",
  },
} as const satisfies ErrorEntries;
