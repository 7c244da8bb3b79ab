import { strict as assert } from 'node:assert';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startControlPlane, type ControlPlane } from './server.js';

const PILOT = new URL('../../../bin/pilot.js', import.meta.url).pathname;

function selfSigned(dir: string, name: string, san: string): { cert: string; key: string; certFile: string; keyFile: string } {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '30',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-subj',
      `/CN=${name}`,
      '-addext',
      `subjectAltName=${san}`,
    ],
    { stdio: 'ignore' },
  );
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile, keyFile };
}

/** What these tests read of an answer: an error, or the certificate list. */
interface ApiJson {
  error: { message: string; hint: string };
  certificates: unknown[];
}

describe('certificates through the API and `pilot certs` (embedded router with HTTPS, no ACME)', () => {
  let cp: ControlPlane;
  let home: string;
  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: ApiJson }> => {
    const res = await fetch(cp.apiUrl + path, {
      method,
      headers: { authorization: `Bearer ${cp.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as ApiJson };
  };
  const cli = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        [PILOT, ...args],
        { env: { ...process.env, PILOT_HOME: home, PILOT_SERVER: cp.apiUrl, PILOT_TOKEN: cp.adminToken }, timeout: 60_000 },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'pilot-certroutes-'));
    cp = await startControlPlane({
      home,
      host: '127.0.0.1',
      port: 0,
      routerHost: '127.0.0.1',
      routerPort: 0,
      logger: pino({ level: 'silent' }),
      workers: 0,
      https: { port: 0 },
    });
  });
  after(async () => {
    await cp.close();
    await rm(home, { recursive: true, force: true });
  });

  it('refuses bad uploads with 400 naming what is wrong, and nothing is stored', async () => {
    const a = selfSigned(home, 'a', 'DNS:a.example');
    const b = selfSigned(home, 'b', 'DNS:b.example');
    const missing = await api('PUT', '/api/v1/certs/a.example', { cert: a.cert });
    assert.equal(missing.status, 400);
    assert.match(missing.json.error.message, /"key" is missing/);
    const mismatch = await api('PUT', '/api/v1/certs/a.example', { cert: a.cert, key: b.key });
    assert.equal(mismatch.status, 400);
    assert.match(mismatch.json.error.message, /does not belong/);
    const wrong = await api('PUT', '/api/v1/certs/a.example', { cert: b.cert, key: b.key });
    assert.equal(wrong.status, 400);
    assert.match(wrong.json.error.message, /does not cover it \(it names b\.example\)/);
    const badHost = await api('PUT', '/api/v1/certs/' + encodeURIComponent('a b'), { cert: a.cert, key: a.key });
    assert.equal(badHost.status, 400);
    const notJson = await api('PUT', '/api/v1/certs/a.example', '{"cert": ');
    assert.equal(notJson.status, 400);
    assert.deepEqual((await api('GET', '/api/v1/certs')).json, { certificates: [] });
  });

  it('serves an uploaded certificate on the HTTPS port; lists it; no ACME: renew says how to set it up; rm', async () => {
    const a = selfSigned(home, 'a2', 'DNS:a.example');
    const set = await cli(['certs', 'set', 'a.example', '--cert', a.certFile, '--key', a.keyFile]);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /a\.example: valid \(user/);
    const list = await cli(['certs']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /a\.example\s+user\s+a2\s+\d{4}-\d\d-\d\d \((29|30)d\)\s+valid/);
    const wrong = await cli(['certs', 'set', 'c.example', '--cert', a.certFile, '--key', a.keyFile]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /does not cover it/);

    const status = await new Promise<number>((resolve, reject) => {
      https
        .get(
          {
            host: '127.0.0.1',
            port: cp.routerHttpsPort!,
            servername: 'a.example',
            headers: { host: 'a.example' },
            ca: a.cert,
            agent: false,
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        )
        .on('error', reject);
    });
    assert.equal(status, 404, 'the handshake with the uploaded certificate works; no app serves the host');

    const renew = await api('POST', '/api/v1/certs/a.example/renew');
    assert.equal(renew.status, 400);
    assert.match(renew.json.error.hint, /PILOT_ACME_DIRECTORY/);
    assert.equal((await api('POST', '/api/v1/certs/nope.example/renew')).status, 404);
    assert.equal((await cli(['certs', 'rm', 'a.example'])).code, 0);
    assert.equal((await api('DELETE', '/api/v1/certs/a.example')).status, 404);
  });
});
