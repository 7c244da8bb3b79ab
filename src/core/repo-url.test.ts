import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeRepo, repoUrlProblem, sameRepository } from './repo-url.js';

describe('repository URLs', () => {
  it('accepts https, ssh, scp-like, file and absolute paths', () => {
    for (const ok of [
      'https://github.com/acme/shop.git',
      'ssh://git@github.com/acme/shop.git',
      'git@github.com:acme/shop.git',
      'file:///srv/git/shop.git',
      '/srv/git/shop.git',
    ]) {
      assert.equal(repoUrlProblem(ok), undefined, ok);
    }
  });

  it('refuses transport helpers, options, other schemes and odd characters', () => {
    for (const bad of [
      'ext::sh -c touch% /tmp/x',
      '-oProxyCommand=touch /tmp/x',
      '--upload-pack=touch /tmp/x',
      'http://github.com/a/b',
      'fd::17',
      'https://github.com/a b',
      'git@host:-oProxyCommand=x',
      'https://user:pw@github.com/a/b',
      'relative/path',
      '/srv/../etc',
      'file://evil.com/x',
      '',
    ]) {
      assert.notEqual(repoUrlProblem(bad), undefined, bad);
    }
  });

  it('matches a payload by any of its URLs or by full_name', () => {
    assert.equal(normalizeRepo('git@GitHub.com:acme/shop.git'), 'github.com/acme/shop');
    assert.equal(normalizeRepo('https://github.com/acme/shop/'), 'github.com/acme/shop');
    assert.ok(sameRepository('git@github.com:acme/shop.git', { clone_url: 'https://github.com/acme/shop.git' }));
    assert.ok(sameRepository('https://github.com/acme/shop.git', { full_name: 'acme/shop' }));
    assert.ok(sameRepository('/srv/git/shop.git', { clone_url: 'file:///srv/git/shop.git' }));
    assert.ok(
      !sameRepository('https://github.com/acme/shop.git', { clone_url: 'https://github.com/acme/other.git', full_name: 'acme/other' }),
    );
    assert.ok(!sameRepository('https://github.com/acme/shop.git', {}));
  });
});
