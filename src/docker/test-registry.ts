/**
 * Tests only: a real registry (Debian's `docker-registry`, the distribution registry) on a free
 * loopback port, storage in a temp folder, optionally with htpasswd (bcrypt) authentication. The
 * test that starts it stops it (`stop()` kills it by pid and removes its folder).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { allocatePort } from '../os/ports.js';
import type { Engine } from './engine.js';
import { followProgress } from './progress.js';

export const REGISTRY_BIN = '/usr/bin/docker-registry';

/** Why a test needing the registry binary must skip, or false. */
export const registrySkip: string | false = existsSync(REGISTRY_BIN) ? false : `no ${REGISTRY_BIN} (apt-get install docker-registry)`;

export interface TestRegistry {
  /** host:port */
  readonly address: string;
  /** http://host:port */
  readonly url: string;
  /** Its folder: config.yml, and the storage under data/. */
  readonly dir: string;
  stop(): Promise<void>;
  /** Kill the registry but keep its storage (a registry that is down); `restart()` brings it back on the same port. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  /** Bytes stored (blobs and manifests). */
  storageBytes(): number;
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

/** bcrypt of `password`, through the C library's crypt(3) (python3's crypt module). */
function bcrypt(password: string): string {
  const r = spawnSync(
    'python3',
    ['-W', 'ignore', '-c', 'import crypt,sys; print(crypt.crypt(sys.stdin.read(), crypt.mksalt(crypt.METHOD_BLOWFISH)))'],
    { input: password, encoding: 'utf8' },
  );
  const hash = r.stdout.trim();
  if (r.status !== 0 || !hash.startsWith('$2')) throw new Error(`cannot bcrypt a test password: ${r.stderr}`);
  return hash;
}

/** Bearer token authentication: the registry trusts JWTs from `issuer` for `service`, signed by the key of `certFile`. */
export interface RegistryTokenAuth {
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  readonly certFile: string;
}

export async function startRegistry(
  opts: { user?: { username: string; password: string }; token?: RegistryTokenAuth } = {},
): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'pilot-registry-'));
  const port = await allocatePort('127.0.0.1');
  const address = `127.0.0.1:${port}`;
  const t = opts.token;
  const auth = opts.user
    ? `auth:\n  htpasswd:\n    realm: pilot-test\n    path: ${join(dir, 'htpasswd')}\n`
    : t
      ? `auth:\n  token:\n    realm: ${t.realm}\n    service: ${t.service}\n    issuer: ${t.issuer}\n    rootcertbundle: ${t.certFile}\n`
      : '';
  if (opts.user) await writeFile(join(dir, 'htpasswd'), `${opts.user.username}:${bcrypt(opts.user.password)}\n`);
  await writeFile(
    join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\n  delete:\n    enabled: true\nhttp:\n  addr: ${address}\n${auth}`,
  );
  let p = spawn(REGISTRY_BIN, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const kill = async (): Promise<void> => {
    if (p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
    }
  };
  const stop = async (): Promise<void> => {
    await kill();
    await rm(dir, { recursive: true, force: true });
  };
  const ready = async (): Promise<void> => {
    p.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    const end = performance.now() + 10_000;
    for (;;) {
      try {
        const res = await request(`http://${address}/v2/`);
        await res.body.dump();
        if (res.statusCode === 200 || res.statusCode === 401) return;
      } catch {
        // not listening yet
      }
      if (p.exitCode !== null || performance.now() > end) {
        await stop();
        throw new Error(`docker-registry did not start: ${err}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await ready();
  return {
    address,
    url: `http://${address}`,
    dir,
    stop,
    kill,
    async restart() {
      await kill();
      p = spawn(REGISTRY_BIN, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
      await ready();
    },
    storageBytes: () => (existsSync(join(dir, 'data')) ? du(join(dir, 'data')) : 0),
  };
}

/** Tag `imageId` as `<registry>/<repo>:<tag>`, push it, and return the pull reference by digest. */
export async function pushImage(
  engine: Engine,
  imageId: string,
  registry: string,
  repo: string,
  auth?: { username: string; password: string },
): Promise<{ ref: string; tagged: string }> {
  const tagged = `${registry}/${repo}:t`;
  await engine.getImage(imageId).tag({ repo: `${registry}/${repo}`, tag: 't' });
  const stream = await engine.getImage(tagged).push({ authconfig: auth ? { ...auth, serveraddress: registry } : {} } as object);
  let digest: string | undefined;
  const messages = await followProgress(engine, stream, (m) => {
    if (m.aux?.Digest) digest = m.aux.Digest;
  });
  const bad = messages.find((m) => m.error);
  if (bad || !digest) throw new Error(`push of ${tagged} failed: ${bad?.error ?? 'no digest'}`);
  return { ref: `${registry}/${repo}@${digest}`, tagged };
}
