import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { detect } from './init-detect.js';
import { nextSteps } from './init.js';

const d = detect({ folder: 'shop', packageJson: '{"name":"shop"}', lockfiles: [], dockerfile: false, monorepoMarkers: [], sources: {} });

describe('pilot init next steps', () => {
  it('a GitHub remote: apps create with the https URL, the webhook page, the branch quoted for the shell', () => {
    const steps = nextSteps(d, 'git@github.com:acme/shop.git', "feat/it's", '.').join('\n');
    assert.match(steps, /pilot apps create shop --repo https:\/\/github\.com\/acme\/shop\.git --branch 'feat\/it'\\''s'/);
    assert.match(steps, /https:\/\/github\.com\/acme\/shop\/settings\/hooks\/new/);
    assert.match(steps, /pilot run \.$/m);
  });

  it('another host: its URL without credentials, quoted when it needs to be', () => {
    const steps = nextSteps(d, 'https://deploy:s3cret@git.example.com/team/shop $(id).git', 'main', '.').join('\n');
    assert.ok(!steps.includes('s3cret'));
    assert.match(steps, /--repo 'https:\/\/git\.example\.com\/team\/shop \$\(id\)\.git' --branch main/);
  });

  it('no remote: says to push first; an app in a sub-folder says where it is', () => {
    assert.match(nextSteps(d, undefined, undefined, '.').join('\n'), /no git remote "origin"/);
    const sub = nextSteps(d, 'https://github.com/acme/mono', 'main', 'apps/shop').join('\n');
    assert.match(sub, /The app is in apps\/shop of the repository/);
    assert.match(sub, /pilot run apps\/shop$/m);
  });
});
