import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { resolveRunCommand } from '../core/run-command.js';
import type { ContextEntry } from './context.js';
import { commandProblem, generateDockerfile } from './dockerfile.js';

const entries: ContextEntry[] = [
  { path: '.dockerignore', kind: 'file' },
  { path: 'lib', kind: 'dir' },
  { path: 'lib/a.js', kind: 'file' },
  { path: 'node_modules', kind: 'dir' },
  { path: 'node_modules/x/index.js', kind: 'file' },
  { path: 'package.json', kind: 'file' },
  { path: 'server.js', kind: 'file' },
];

describe('generated Dockerfile', () => {
  it('copies dependencies in their own layer first, then the app, and starts the resolved command', () => {
    const text = generateDockerfile({ baseImage: 'pilot/node:20.20.2', command: ['node', 'server.js'], entries });
    assert.deepEqual(text.split('\n').filter((l) => l && !l.startsWith('#')), [
      'FROM pilot/node:20.20.2',
      'WORKDIR /app',
      'ENV NODE_ENV=production',
      'COPY ["node_modules", "/app/node_modules/"]',
      'COPY ["lib","/app/lib/"]',
      'COPY ["package.json","server.js","/app/"]',
      'USER node',
      'CMD ["node","server.js"]',
    ]);
  });

  it('loads a yarn Plug\'n\'Play app\'s .pnp.cjs (and its ESM loader) through NODE_OPTIONS', () => {
    const pnp: ContextEntry[] = [{ path: '.pnp.cjs', kind: 'file' }, { path: '.pnp.loader.mjs', kind: 'file' }, { path: '.yarn', kind: 'dir' }, { path: 'package.json', kind: 'file' }];
    const text = generateDockerfile({ baseImage: 'pilot/node:20.20.2', command: ['node', 'server.js'], entries: pnp });
    assert.ok(text.includes('ENV NODE_OPTIONS="--require /app/.pnp.cjs --experimental-loader file:///app/.pnp.loader.mjs"\n'), text);
    assert.ok(!generateDockerfile({ baseImage: 'b', command: ['node', 'server.js'], entries }).includes('NODE_OPTIONS'));
  });

  it('takes the command from pilot.yaml run, the Procfile web line, or a plain node start script', () => {
    const cmd = (run: string[] | undefined, procfile: string | undefined, scripts?: Record<string, string>): string =>
      generateDockerfile({ baseImage: 'b', command: resolveRunCommand(run, procfile, scripts), entries }).split('\n').find((l) => l.startsWith('CMD'))!;
    assert.equal(cmd(['node', 'a.js', '--x=1'], 'web: node b.js'), 'CMD ["node","a.js","--x=1"]');
    assert.equal(cmd(undefined, 'worker: x\nweb: node "b c.js"'), 'CMD ["node","b c.js"]');
    assert.equal(cmd(undefined, undefined, { start: 'node dist/main.js' }), 'CMD ["node","dist/main.js"]');
  });

  it('refuses a start command that needs a shell, saying to add a Dockerfile or a node run command', () => {
    for (const command of [['npm', 'start'], ['/bin/sh', '-c', 'node a.js && x'], ['python', 'app.py']]) {
      assert.ok(commandProblem(command));
      assert.throws(() => generateDockerfile({ baseImage: 'pilot/node:20', command, entries }), (e: Error & { code?: string; hint?: string }) =>
        e.code === 'invalid_config' && /no shell/.test(e.message) && /Dockerfile/.test(e.hint ?? '') && /run: node/.test(e.hint ?? ''));
    }
    // npm start that is not a plain node command resolves to npm start: refused.
    assert.deepEqual(resolveRunCommand(undefined, undefined, { start: 'node a.js && b' }), ['npm', 'start']);
  });

  it('falls back to one COPY when names would be patterns to the daemon or folders are many', () => {
    const odd = [...entries, { path: 'a[1].js', kind: 'file' as const }];
    assert.match(generateDockerfile({ baseImage: 'b', command: ['node', 's.js'], entries: odd }), /^COPY \. \/app\/$/m);
    const many = Array.from({ length: 30 }, (_, i) => ({ path: `d${i}`, kind: 'dir' as const }));
    assert.match(generateDockerfile({ baseImage: 'b', command: ['node', 's.js'], entries: many }), /^COPY \. \/app\/$/m);
  });

  it('writes the command as a JSON array: no shell form, quotes and newlines escaped', () => {
    const text = generateDockerfile({ baseImage: 'b', command: ['node', 'a"b\nRUN evil'], entries });
    assert.match(text, /^CMD \["node","a\\"b\\nRUN evil"\]$/m);
    assert.ok(!/^RUN/m.test(text));
  });
});
