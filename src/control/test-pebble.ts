/**
 * Test support: Let's Encrypt's test CA (Debian's `pebble`) on loopback, with `pebble-challtestsrv`
 * as its DNS server (every name resolves to 127.0.0.1 unless told otherwise), validating HTTP-01 on
 * the port given (the router's). Both processes are stopped by pid in `stop()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selfSigned } from '../os/test-certs.js';

export const PEBBLE = '/usr/bin/pebble';
export const CHALLTESTSRV = '/usr/bin/pebble-challtestsrv';
export const pebbleInstalled = (): boolean => existsSync(PEBBLE) && existsSync(CHALLTESTSRV);

export interface Pebble {
  readonly directoryUrl: string;
  /** The CA of pebble's own HTTPS listener (what an ACME client must trust). */
  readonly apiCaPem: string;
  /** Pebble's issuing root (regenerated at each start): what a TLS client checks served chains against. */
  rootPem(): Promise<string>;
  /** Make `host` resolve to `address` (e.g. one where nothing listens: the challenge fails). */
  resolve(host: string, address: string): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function get(url: string, ca?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http;
    const req = lib.get(url, ca ? { ca } : {}, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

function post(url: string, json: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(JSON.stringify(json));
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.pid !== undefined && process.kill(child.pid, 'SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    process.kill(child.pid!, 'SIGTERM');
  });
}

/** Start pebble validating HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort of 127.0.0.1. */
export async function startPebble(httpPort: number, tlsPort: number): Promise<Pebble> {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-pebble-'));
  const children: ChildProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(children.map(stopChild));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const tls = selfSigned(dir, 'api', ['localhost', '127.0.0.1'], 2);
    const [api, mgmt, dns, dnsMgmt] = [await freePort(), await freePort(), await freePort(), await freePort()];
    writeFileSync(
      join(dir, 'pebble.json'),
      JSON.stringify({
        pebble: {
          listenAddress: `127.0.0.1:${api}`,
          managementListenAddress: `127.0.0.1:${mgmt}`,
          certificate: tls.certFile,
          privateKey: tls.keyFile,
          httpPort,
          tlsPort,
          ocspResponderURL: '',
          externalAccountBindingRequired: false,
        },
      }),
    );
    const logs = { dns: '', pebble: '' };
    const dnsChild = spawn(
      CHALLTESTSRV,
      [
        '-dns01',
        `127.0.0.1:${dns}`,
        '-http01',
        '',
        '-https01',
        '',
        '-tlsalpn01',
        '',
        '-management',
        `127.0.0.1:${dnsMgmt}`,
        '-defaultIPv4',
        '127.0.0.1',
        '-defaultIPv6',
        '',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(dnsChild);
    dnsChild.stdout!.on('data', (c: Buffer) => (logs.dns += c.toString()));
    dnsChild.stderr!.on('data', (c: Buffer) => (logs.dns += c.toString()));
    const pebble = spawn(PEBBLE, ['-config', join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dns}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
    });
    children.push(pebble);
    pebble.stdout!.on('data', (c: Buffer) => (logs.pebble += c.toString()));
    pebble.stderr!.on('data', (c: Buffer) => (logs.pebble += c.toString()));
    const apiCaPem = tls.cert;
    const directoryUrl = `https://127.0.0.1:${api}/dir`;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ok = await get(directoryUrl, apiCaPem).then(
        (r) => r.status === 200,
        () => false,
      );
      const dnsUp = await get(`http://127.0.0.1:${dnsMgmt}/`).then(
        () => true,
        () => false,
      );
      if (ok && dnsUp) break;
      if (Date.now() > deadline || pebble.exitCode !== null || dnsChild.exitCode !== null) {
        await stop();
        throw new Error(`pebble did not start within 30 s:\n${logs.pebble}\n${logs.dns}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return {
      directoryUrl,
      apiCaPem,
      rootPem: async () => (await get(`https://127.0.0.1:${mgmt}/roots/0`, apiCaPem)).body,
      resolve: async (host, address) => {
        const fqdn = host.endsWith('.') ? host : `${host}.`;
        await post(`http://127.0.0.1:${dnsMgmt}/clear-a`, { host: fqdn });
        const status = await post(`http://127.0.0.1:${dnsMgmt}/add-a`, { host: fqdn, addresses: [address] });
        if (status !== 200) throw new Error(`challtestsrv add-a answered ${status}`);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
