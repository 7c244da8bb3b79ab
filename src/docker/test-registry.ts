/**
 * For tests and benchmarks: a real registry (Debian's `docker-registry`, github.com/distribution)
 * on a free loopback port, storing in a temp folder, optionally with htpasswd auth. The caller
 * stops it (by pid) with `stop()`; `restart()` brings it back on the same port and storage.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REGISTRY_BIN = '/usr/bin/docker-registry';
/** bcrypt (cost 4) of TEST_REGISTRY_PASSWORD: the registry accepts only bcrypt in htpasswd. */
const TEST_HTPASSWD = 'pilot:$2b$04$Hplk16xK8f7dLFAeFkHhRezEakZVIjsbcIQdnLC/KmTZUAHcYg68a';
export const TEST_REGISTRY_USER = 'pilot';
export const TEST_REGISTRY_PASSWORD = 'pilot-registry-pw-7f3a';

/** Why a test needing the registry binary must skip, or false. */
export const registrySkip: string | false = existsSync(REGISTRY_BIN) ? false : `no ${REGISTRY_BIN} (apt-get install docker-registry)`;

export interface TestRegistry {
  readonly url: string;
  readonly address: string;
  readonly port: number;
  readonly root: string;
  /** Bytes stored (blobs and manifests). */
  storageBytes(): number;
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** stop() and remove the storage. */
  destroy(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function du(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    total += st.isDirectory() ? du(p) : st.size;
  }
  return total;
}

export async function startRegistry(opts: { auth?: boolean } = {}): Promise<TestRegistry> {
  const root = mkdtempSync(join(tmpdir(), 'pilot-registry-'));
  const port = await freePort();
  const data = join(root, 'data');
  const auth = opts.auth ? `auth:\n  htpasswd:\n    realm: pilot-test\n    path: ${join(root, 'htpasswd')}\n` : '';
  if (opts.auth) writeFileSync(join(root, 'htpasswd'), TEST_HTPASSWD + '\n');
  writeFileSync(join(root, 'config.yml'), [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${data}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    auth,
  ].join('\n'));
  let proc: ChildProcess | undefined;
  let output = '';
  const start = async (): Promise<void> => {
    const p = spawn(REGISTRY_BIN, ['serve', join(root, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin', HOME: root } });
    proc = p;
    p.stdout!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
    p.stderr!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
    const end = Date.now() + 15_000;
    for (;;) {
      if (p.exitCode !== null) throw new Error(`docker-registry exited ${p.exitCode}: ${output}`);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/v2/`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.status === 200 || res.status === 401) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > end) throw new Error(`docker-registry did not answer on 127.0.0.1:${port}: ${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async (): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null || p.pid === undefined) return;
    const exited = new Promise((r) => p.once('exit', r));
    process.kill(p.pid, 'SIGTERM');
    const t = setTimeout(() => p.pid !== undefined && p.exitCode === null && process.kill(p.pid, 'SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  };
  await start().catch(async (err: unknown) => {
    await stop();
    rmSync(root, { recursive: true, force: true });
    throw err;
  });
  return {
    url: `http://127.0.0.1:${port}`,
    address: `127.0.0.1:${port}`,
    port,
    root,
    storageBytes: () => (existsSync(data) ? du(data) : 0),
    stop,
    restart: start,
    async destroy() {
      await stop();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
