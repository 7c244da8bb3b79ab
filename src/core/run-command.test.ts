import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { splitCommand } from './app-config.js';
import { isPilotError } from './errors.js';
import { missingStartCommand, needsShell, procfileWeb, resolveReleaseCommand, resolveRunCommand } from './run-command.js';

/** sh-style single quoting: the inverse splitCommand must undo. */
const shQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;
const plainWord = fc.stringMatching(/^[A-Za-z0-9_@%+:,./-]{1,12}$/).filter((w) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(w));

describe('resolveRunCommand', () => {
  it('uses the pilot.yaml run command as given', () => {
    assert.deepEqual(resolveRunCommand(['node', 'server.js', '$NOT_EXPANDED'], 'web: ignored'), ['node', 'server.js', '$NOT_EXPANDED']);
    assert.throws(
      () => resolveRunCommand([], undefined),
      (e: unknown) => isPilotError(e) && e.code === 'invalid_config',
    );
  });

  it('falls back to the Procfile web line, then to npm start', () => {
    const procfile = '# processes\r\nworker: node worker.js\r\n\r\nweb:   node server.js --port=3000  \r\nrelease: npm run migrate\r\n';
    assert.deepEqual(resolveRunCommand(undefined, procfile), ['node', 'server.js', '--port=3000']);
    assert.deepEqual(resolveRunCommand(undefined, 'worker: node worker.js\n#web: node x.js\n'), ['npm', 'start']);
    assert.deepEqual(resolveRunCommand(undefined, 'web:\n'), ['npm', 'start']);
    assert.deepEqual(resolveRunCommand(undefined, undefined), ['npm', 'start']);
    assert.deepEqual(resolveRunCommand(undefined, 'web: node "my server.js"'), ['node', 'my server.js']);
  });

  it('runs a plain `node …` start script directly, and anything else through npm start', () => {
    assert.deepEqual(resolveRunCommand(undefined, undefined, { start: 'node server.js --port 1' }), ['node', 'server.js', '--port', '1']);
    assert.deepEqual(resolveRunCommand(undefined, undefined, { start: 'node server.js', prestart: 'node migrate.js' }), ['npm', 'start']);
    assert.deepEqual(resolveRunCommand(undefined, undefined, { start: 'node server.js && echo done' }), ['npm', 'start']);
    assert.deepEqual(resolveRunCommand(undefined, undefined, { start: 'next start' }), ['npm', 'start']);
    assert.deepEqual(resolveRunCommand(undefined, undefined, {}), ['npm', 'start']);
    assert.deepEqual(resolveRunCommand(undefined, 'web: node web.js\n', { start: 'node server.js' }), ['node', 'web.js']);
  });

  it('runs web lines with shell syntax under /bin/sh -c, unchanged', () => {
    for (const line of [
      'node server.js --port $PORT',
      'npm run migrate && node server.js',
      'node server.js | tee log',
      'cd app; node server.js',
      'node server.js > out.log',
      'node server.js < input',
      'node `which server`',
      'node dist/*.js',
      'node server?.js',
      'NODE_ENV=production node server.js',
      'node "a\\b.js"',
      'node ~/server.js',
      'node server.js # comment',
    ]) {
      assert.deepEqual(resolveRunCommand(undefined, `web: ${line}`), ['/bin/sh', '-c', line], line);
    }
  });

  it('reports an unterminated quote in a plain web line as invalid_config', () => {
    assert.throws(
      () => resolveRunCommand(undefined, "web: node 'server.js"),
      (e: unknown) => isPilotError(e) && e.code === 'invalid_config' && e.message.startsWith('Procfile web:'),
    );
  });

  it('splits any plain line into its words, without a shell (property)', () => {
    fc.assert(
      fc.property(fc.array(plainWord, { minLength: 1, maxLength: 8 }), fc.constantFrom(' ', '  ', '\t'), (words, sep) => {
        const line = words.join(sep);
        assert.equal(needsShell(line), false);
        assert.deepEqual(resolveRunCommand(undefined, `web: ${line}`), words);
      }),
    );
  });

  it('sends any line holding a shell metacharacter to sh (property)', () => {
    const meta = fc.constantFrom('$', '&&', '|', ';', '>', '<', '`', '*', '?', '[', '(', '\\', '~', '#', '&', '{');
    fc.assert(
      fc.property(fc.array(plainWord, { minLength: 1, maxLength: 4 }), meta, fc.array(plainWord, { maxLength: 4 }), (before, m, after) => {
        const line = [...before, m, ...after].join(' ');
        assert.deepEqual(resolveRunCommand(undefined, `web: ${line}`), ['/bin/sh', '-c', line]);
      }),
    );
  });

  it('finds the web line wherever it is among other lines and comments (property)', () => {
    const other = fc.oneof(
      fc.constant(''),
      fc.constant('# web: node wrong.js'),
      plainWord.map((w) => `worker${w.replaceAll(/[^A-Za-z0-9]/g, '')}: node ${w}`),
    );
    fc.assert(
      fc.property(fc.array(other), fc.array(other), fc.array(plainWord, { minLength: 1, maxLength: 4 }), (pre, post, words) => {
        const procfile = [...pre, `web: ${words.join(' ')}`, ...post].join('\n');
        assert.equal(procfileWeb(procfile), words.join(' '));
      }),
    );
  });
});

describe('splitCommand', () => {
  it('round-trips any argv quoted sh-style, empty words included (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'binary', maxLength: 10 }), { minLength: 1, maxLength: 6 }), (argv) => {
        assert.deepEqual(splitCommand(argv.map(shQuote).join(' ')), argv);
      }),
    );
  });

  it('never makes empty words from unquoted whitespace (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('a', 'b', ' ', '\t', '\n', '-', '.') }), (s) => {
        assert.deepEqual(
          splitCommand(s),
          s.split(/\s+/).filter((w) => w !== ''),
        );
      }),
    );
  });

  it('keeps an explicitly quoted empty word', () => {
    assert.deepEqual(splitCommand(`node x.js '' ""`), ['node', 'x.js', '', '']);
  });
});

describe('release command', () => {
  it('takes pilot.yaml first, else the Procfile release: line, else none', () => {
    assert.deepEqual(resolveReleaseCommand(['node', 'migrate.js'], 'release: node other.js'), ['node', 'migrate.js']);
    assert.deepEqual(resolveReleaseCommand(undefined, 'web: node server.js\nrelease: node migrate.js --up'), [
      'node',
      'migrate.js',
      '--up',
    ]);
    assert.deepEqual(resolveReleaseCommand(undefined, 'web: node server.js\n# release: no\n'), undefined);
    assert.equal(resolveReleaseCommand(false, 'release: node migrate.js'), undefined);
    assert.equal(resolveReleaseCommand(undefined, undefined), undefined);
  });

  it('runs a shell line under /bin/sh -c, as Procfiles mean it', () => {
    assert.deepEqual(resolveReleaseCommand(undefined, 'release: node migrate.js && echo done > $HOME/x'), [
      '/bin/sh',
      '-c',
      'node migrate.js && echo done > $HOME/x',
    ]);
  });

  it('refuses an empty configured command', () => {
    assert.throws(() => resolveReleaseCommand([''], undefined), /release: empty command/);
  });
});

describe('missingStartCommand', () => {
  it("is satisfied by run:, a Procfile web line, a start script or npm's server.js default", () => {
    assert.equal(missingStartCommand(['node', 'a.js'], undefined, {}, false), undefined);
    assert.equal(missingStartCommand(undefined, 'web: node index.js\n', {}, false), undefined);
    assert.equal(missingStartCommand(undefined, undefined, { start: 'next start' }, false), undefined);
    assert.equal(missingStartCommand(undefined, undefined, undefined, true), undefined);
  });

  it('names what is missing and the scripts the app does have (nuxt starter, docker getting-started)', () => {
    const nuxt = missingStartCommand(undefined, undefined, { build: 'nuxt build', dev: 'nuxt dev', preview: 'nuxt preview' }, false);
    assert.ok(nuxt && isPilotError(nuxt));
    assert.equal(nuxt.code, 'invalid_config');
    assert.match(nuxt.message, /no "start" script.*no Procfile `web:` line and no server\.js \(package\.json has "dev", "preview"\)/);
    assert.match(nuxt.hint ?? '', /run: in pilot\.yaml|`run:` in pilot\.yaml/);
    const bare = missingStartCommand(undefined, 'worker: node w.js\n# web: node x.js\n', { test: 'jest' }, false);
    assert.ok(bare);
    assert.doesNotMatch(bare.message, /\(package\.json has/);
  });
});
