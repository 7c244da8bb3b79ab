import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PilotError } from '../core/errors.js';
import { FsBlobStore } from './blob-store.js';
import { OciBlobStore } from './oci-blob-store.js';
import { credentialsFromEnv, openBlobStore, parseArtifactsUrl, uploadChunksFromEnv } from './open-blob-store.js';

describe('--artifacts', () => {
  it('reads oci:// as HTTPS and oci+http:// as plain HTTP to a loopback registry', () => {
    assert.deepEqual(parseArtifactsUrl('oci://registry.example.com/pilot'), {
      origin: 'https://registry.example.com',
      repo: 'pilot',
      display: 'oci://registry.example.com/pilot',
    });
    assert.deepEqual(parseArtifactsUrl('oci://registry.example.com:5000/team/pilot-blobs/'), {
      origin: 'https://registry.example.com:5000',
      repo: 'team/pilot-blobs',
      display: 'oci://registry.example.com:5000/team/pilot-blobs',
    });
    assert.equal(parseArtifactsUrl('oci+http://127.0.0.1:5000/pilot').origin, 'http://127.0.0.1:5000');
    assert.equal(parseArtifactsUrl('oci+http://localhost:5000/a/b').repo, 'a/b');
    assert.equal(parseArtifactsUrl('oci+http://[::1]:5000/a').origin, 'http://[::1]:5000');
  });

  it('refuses what it cannot use, saying why, and never echoes a password', () => {
    const cases: [string, RegExp][] = [
      ['registry:5000/pilot', /not a URL|scheme/],
      ['https://registry/pilot', /scheme must be oci:\/\//],
      ['oci+http://10.0.0.5:5000/pilot', /plain HTTP only to a registry on this machine/],
      ['oci+http://registry.example.com/pilot', /plain HTTP only/],
      ['oci://registry.example.com', /no repository/],
      ['oci://registry.example.com/', /no repository/],
      ['oci://registry.example.com/Pilot', /not a valid name/],
      ['oci://registry.example.com/a//b', /not a valid name/],
      ['oci://registry.example.com/../etc', /no "\." or "\.\."/],
      ['oci://registry.example.com/a/./b', /no "\." or "\.\."/],
      ['oci://registry.example.com/a%2F..%2Fb', /not a valid name/],
      ['oci://registry.example.com/pilot?x=1', /no query/],
      ['oci://user:hunter2-secret@registry.example.com/pilot', /credentials do not go in the URL/],
      [`oci://registry.example.com/${'a'.repeat(300)}`, /not a valid name/],
    ];
    for (const [text, why] of cases) {
      assert.throws(
        () => parseArtifactsUrl(text),
        (e: unknown) => {
          assert.ok(e instanceof PilotError, text);
          assert.equal(e.code, 'invalid_argument');
          assert.match(e.message, why, text);
          assert.doesNotMatch(e.message, /hunter2/);
          assert.match(e.hint ?? '', /oci:\/\/HOST/);
          return true;
        },
      );
    }
  });

  it('makes the filesystem store by default and the OCI store for a registry URL', async () => {
    const home = await mkdtemp(join(tmpdir(), 'pilot-open-blobs-'));
    try {
      const fs = openBlobStore(undefined, home);
      assert.ok(fs instanceof FsBlobStore);
      assert.equal(fs.location, join(home, 'artifacts'));
      assert.ok(openBlobStore('  ', home) instanceof FsBlobStore);
      const oci = openBlobStore('oci+http://127.0.0.1:5000/pilot', home, {});
      assert.ok(oci instanceof OciBlobStore);
      assert.equal(oci.location, 'oci+http://127.0.0.1:5000/pilot');
      await oci.close();
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('reads PILOT_ARTIFACTS_CHUNK_MB, refusing what is not a size', () => {
    assert.equal(uploadChunksFromEnv({}), undefined);
    assert.deepEqual(uploadChunksFromEnv({ PILOT_ARTIFACTS_CHUNK_MB: '16' }), { chunked: true, chunkBytes: 16 * 1024 * 1024 });
    for (const bad of ['0', '-1', '1.5', '2048', 'ten', '1e3'])
      assert.throws(
        () => uploadChunksFromEnv({ PILOT_ARTIFACTS_CHUNK_MB: bad }),
        (e: unknown) => e instanceof PilotError && e.code === 'invalid_argument' && /from 1 to 1024/.test(e.message),
        bad,
      );
  });

  it('takes credentials from the environment, files first', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pilot-creds-'));
    try {
      await writeFile(join(dir, 'pw'), 'from-file\n');
      await writeFile(join(dir, 'tok'), 'tok-from-file');
      assert.deepEqual(credentialsFromEnv({}), {});
      assert.deepEqual(credentialsFromEnv({ PILOT_ARTIFACTS_USERNAME: 'u', PILOT_ARTIFACTS_PASSWORD: 'p' }), {
        username: 'u',
        password: 'p',
      });
      assert.deepEqual(
        credentialsFromEnv({
          PILOT_ARTIFACTS_USERNAME: 'u',
          PILOT_ARTIFACTS_PASSWORD: 'p',
          PILOT_ARTIFACTS_PASSWORD_FILE: join(dir, 'pw'),
        }),
        { username: 'u', password: 'from-file' },
      );
      assert.deepEqual(credentialsFromEnv({ PILOT_ARTIFACTS_TOKEN_FILE: join(dir, 'tok') }), { token: 'tok-from-file' });
      assert.throws(
        () => credentialsFromEnv({ PILOT_ARTIFACTS_TOKEN_FILE: join(dir, 'missing') }),
        (e: unknown) =>
          e instanceof PilotError &&
          /cannot read PILOT_ARTIFACTS_TOKEN_FILE \(.*missing\): ENOENT/.test(e.message) &&
          /mode 0600/.test(e.hint ?? ''),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
