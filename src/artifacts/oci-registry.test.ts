/**
 * Bearer token authentication against a real docker-registry configured for token auth (`auth:
 * token:`): the registry verifies RS256 JWTs whose x5c certificate chains to its rootcertbundle.
 * The token service is this test's (a few lines of node:http minting JWTs with node:crypto, the
 * part a real deployment gets from Harbor, GitLab or docker_auth); the registry is the real one.
 */
import { spawnSync } from 'node:child_process';
import { createHash, createPrivateKey, randomBytes, randomUUID, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PilotError } from '../core/errors.js';
import { Agent } from '../http/undici.js';
import { registrySkip, startRegistry, type TestRegistry } from '../docker/test-registry.js';
import { OciBlobStore } from './oci-blob-store.js';
import type { OciCredentials } from './oci-registry.js';
import { parseChallenge } from './oci-registry.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');
const SERVICE = 'pilot-test-registry';
const ISSUER = 'pilot-test-issuer';
const USER = { username: 'ci-bot', password: 'token-service-pw-91c' };

describe('parseChallenge', () => {
  it('reads a bearer challenge with quoted and bare values', () => {
    assert.deepEqual(
      parseChallenge(' realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"'),
      {
        realm: 'https://auth.example.com/token',
        service: 'registry.example.com',
        scope: 'repository:a/b:pull,push',
      },
    );
    assert.deepEqual(parseChallenge(' realm=pilot-test'), { realm: 'pilot-test' });
  });
});

describe('OCI registry with bearer tokens (docker-registry auth: token)', { skip: registrySkip, timeout: 180_000 }, () => {
  let dir: string;
  let reg: TestRegistry;
  let tokens: Server;
  let key: ReturnType<typeof createPrivateKey>;
  let certDer: Buffer;
  const asked: { scope: string | null; service: string | null; basic: boolean }[] = [];
  const stores: OciBlobStore[] = [];

  /** A JWT the registry accepts for `repo` with `actions`, valid `ttl` seconds. */
  function mint(repo: string, actions: string[], ttl = 300): string {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
    const claims = {
      iss: ISSUER,
      sub: USER.username,
      aud: SERVICE,
      exp: now + ttl,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access: [{ type: 'repository', name: repo, actions }],
    };
    const signing = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    return `${signing}.${b64url(sign('sha256', Buffer.from(signing), key))}`;
  }

  const storeOn = (repo: string, credentials: OciCredentials): OciBlobStore => {
    const s = new OciBlobStore({
      target: { origin: reg.url, repo, display: `oci+http://${reg.address}/${repo}` },
      credentials,
      dispatcher: new Agent(),
    });
    stores.push(s);
    return s;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pilot-token-auth-'));
    const gen = spawnSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=pilot-test-token-signer',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { encoding: 'utf8' }); // prettier-ignore
    assert.equal(gen.status, 0, gen.stderr);
    key = createPrivateKey(readFileSync(join(dir, 'key.pem')));
    certDer = Buffer.from(
      readFileSync(join(dir, 'cert.pem'), 'utf8')
        .replace(/-----[A-Z ]+-----/g, '')
        .replace(/\s+/g, ''),
      'base64',
    );
    tokens = createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      const basic = req.headers.authorization?.startsWith('Basic ') === true;
      asked.push({ scope: u.searchParams.get('scope'), service: u.searchParams.get('service'), basic });
      const [user, pass] = basic ? Buffer.from(req.headers.authorization!.slice(6), 'base64').toString().split(':') : [];
      if (user !== USER.username || pass !== USER.password) {
        res.writeHead(401).end();
        return;
      }
      const scope = /^repository:([^:]+):(.+)$/.exec(u.searchParams.get('scope') ?? '');
      const token = mint(scope?.[1] ?? '', scope?.[2]?.split(',') ?? []);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
    });
    await new Promise<void>((r) => tokens.listen(0, '127.0.0.1', r));
    const port = (tokens.address() as { port: number }).port;
    reg = await startRegistry({
      token: { realm: `http://127.0.0.1:${port}/token`, service: SERVICE, issuer: ISSUER, certFile: join(dir, 'cert.pem') },
    });
  });
  after(async () => {
    for (const s of stores) await s.close();
    await reg?.stop();
    await new Promise((r) => tokens?.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('fetches a token for the repository from the realm with the username and password, then stores and reads', async () => {
    const store = storeOn('team/blobs', { username: USER.username, password: USER.password });
    const data = randomBytes(1024 * 1024 + 5);
    assert.equal((await store.put(Readable.from([data]), { expectedDigest: sha(data) })).created, true);
    assert.equal(await store.verify(sha(data)), true);
    assert.deepEqual(
      (await store.list()).map((b) => b.digest),
      [sha(data)],
    );
    assert.equal(await store.delete(sha(data)), true);
    assert.equal(asked.length, 1, 'one token, kept for the following requests');
    assert.deepEqual(asked[0], { scope: 'repository:team/blobs:pull,push,delete', service: SERVICE, basic: true });
  });

  it('sends a static token as it is (PILOT_ARTIFACTS_TOKEN), and refuses clearly when it is not accepted', async () => {
    const before = asked.length;
    const good = storeOn('static/blobs', { token: mint('static/blobs', ['pull', 'push', 'delete']) });
    const data = randomBytes(3000);
    assert.equal((await good.put(Readable.from([data]), { expectedDigest: sha(data) })).created, true);
    assert.equal(asked.length, before, 'the token service was not asked');
    // A token for another repository: the registry answers 401 again; no second try with it.
    const other = storeOn('static/blobs', { token: mint('elsewhere/blobs', ['pull', 'push']) });
    await assert.rejects(
      other.has(sha(data)),
      (e: unknown) => e instanceof PilotError && e.code === 'registry_refused' && /refused the credentials/.test(e.message),
    );
  });

  it('says clearly when the token service refuses the password, without echoing it', async () => {
    const store = storeOn('team/blobs', { username: USER.username, password: 'not-the-password-x1' });
    await assert.rejects(store.put(Readable.from([Buffer.from('x')])), (e: unknown) => {
      assert.ok(e instanceof PilotError, String(e));
      assert.equal(e.code, 'registry_refused');
      assert.match(e.hint ?? '', /PILOT_ARTIFACTS_TOKEN_FILE/);
      assert.doesNotMatch(JSON.stringify([e.message, e.hint, e.details]), /not-the-password|token-service-pw/);
      return true;
    });
    const none = storeOn('team/blobs', {});
    await assert.rejects(none.has(sha(Buffer.from('x'))), (e: unknown) => e instanceof PilotError && e.code === 'registry_refused');
  });
});
