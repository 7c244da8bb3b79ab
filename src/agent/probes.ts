/**
 * Health probes of instances: HTTP (readiness, liveness) and TCP. A probe never throws: every
 * outcome is a result with a short error text, since the agent turns failures into state changes.
 * Each probe opens and closes its own connection so a slow or broken app cannot hold a pooled one.
 */
import { request, type ClientRequest } from 'node:http';
import { connect } from 'node:net';

export interface ProbeResult {
  readonly ok: boolean;
  /** HTTP status, when a response arrived. */
  readonly status?: number;
  /** Why it failed, short: "connection refused", "timeout after 500 ms", "HTTP 503". */
  readonly error?: string;
  /** The errno code of a connection failure (ECONNREFUSED …): what callers branch on, not the text. */
  readonly code?: string;
  readonly durationMs: number;
}

export interface HttpProbeSpec {
  readonly host: string;
  readonly port: number;
  readonly path: string;
  readonly timeoutMs: number;
}

export interface TcpProbeSpec {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
}

const ERROR_TEXT: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
};

function describeError(e: NodeJS.ErrnoException): string {
  return (e.code !== undefined ? ERROR_TEXT[e.code] : undefined) ?? e.code ?? e.message;
}

/** GET host:port/path; ok when a response with status < 500 arrives within timeoutMs. */
export function httpProbe(spec: HttpProbeSpec): Promise<ProbeResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    let req: ClientRequest | undefined;
    // One deadline for connect + headers (the socket 'timeout' event would only measure idleness).
    const timer = setTimeout(() => finish({ ok: false, error: `timeout after ${spec.timeoutMs} ms` }), spec.timeoutMs);
    function finish(r: Omit<ProbeResult, 'durationMs'>): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req?.destroy(); // only the status matters: never wait for the body nor keep the socket
      resolve({ ...r, durationMs: performance.now() - t0 });
    }
    try {
      req = request({
        host: spec.host,
        port: spec.port,
        path: spec.path,
        method: 'GET',
        agent: false,
        headers: { 'user-agent': 'pilot-probe', connection: 'close' },
      });
    } catch (e) {
      finish({ ok: false, error: (e as Error).message }); // invalid path or host: a bad spec, not a throw
      return;
    }
    req.on('response', (res) => {
      res.on('error', () => {}); // the destroy below may abort the body; that is expected
      const status = res.statusCode ?? 0;
      finish(status < 500 ? { ok: true, status } : { ok: false, status, error: `HTTP ${status}` });
    });
    req.on('error', (e: NodeJS.ErrnoException) =>
      finish({ ok: false, error: describeError(e), ...(e.code !== undefined ? { code: e.code } : {}) }),
    );
    req.end();
  });
}

/** Open a TCP connection to host:port; ok when it connects within timeoutMs. */
export function tcpProbe(spec: TcpProbeSpec): Promise<ProbeResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const timer = setTimeout(() => finish({ ok: false, error: `timeout after ${spec.timeoutMs} ms` }), spec.timeoutMs);
    const socket = connect({ host: spec.host, port: spec.port });
    function finish(r: Omit<ProbeResult, 'durationMs'>): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...r, durationMs: performance.now() - t0 });
    }
    socket.once('connect', () => finish({ ok: true }));
    socket.once('error', (e: NodeJS.ErrnoException) =>
      finish({ ok: false, error: describeError(e), ...(e.code !== undefined ? { code: e.code } : {}) }),
    );
  });
}
