import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { parseRegistryUrl, registryOfRef } from './registry-url.js';

describe('registry URL', () => {
  it('normalizes scheme, host and port, and gives the address images use', () => {
    assert.deepEqual(parseRegistryUrl('http://127.0.0.1:5000/'), { url: 'http://127.0.0.1:5000', address: '127.0.0.1:5000' });
    assert.deepEqual(parseRegistryUrl(' https://Registry.Example.com '), {
      url: 'https://registry.example.com',
      address: 'registry.example.com',
    });
  });
  it('refuses what is not a bare registry URL, saying why', () => {
    for (const [input, why] of [
      ['127.0.0.1:5000', /must start with http/],
      ['ftp://x:1', /must start with http/],
      ['http://u:p@127.0.0.1:5000', /user name or password/],
      ['http://127.0.0.1:5000/v2/', /no path/],
      ['http://127.0.0.1:5000?x=1', /no path/],
      ['http://', /not a URL/],
    ] as const) {
      assert.throws(
        () => parseRegistryUrl(input),
        (e: Error & { code?: string }) => e.code === 'bad_request' && why.test(e.message),
        input,
      );
    }
  });
  it('finds the registry of an image reference', () => {
    assert.equal(registryOfRef('127.0.0.1:5000/shop@sha256:ab'), '127.0.0.1:5000');
    assert.equal(registryOfRef('localhost/shop:1'), 'localhost');
    assert.equal(registryOfRef('library/node:20'), undefined);
    assert.equal(registryOfRef('node'), undefined);
  });
});
