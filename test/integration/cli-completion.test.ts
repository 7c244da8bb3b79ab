/**
 * `pilot completion bash|zsh|fish`: each script is loaded by its own shell and asked to complete
 * a few command lines; the answers come from the commander tree, so they follow every command.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Harness } from './harness.js';

const h = new Harness();
const scripts: Record<string, string> = {};

function has(shell: string): boolean {
  return ['/usr/bin', '/bin', '/usr/local/bin'].some((d) => existsSync(join(d, shell)));
}

before(async () => {
  for (const shell of ['bash', 'zsh', 'fish']) {
    const r = await h.cli(['completion', shell]);
    assert.equal(r.code, 0, r.stderr);
    scripts[shell] = h.track(join(h.home, `completion.${shell}`));
    writeFileSync(scripts[shell]!, r.stdout);
  }
});
after(() => h.cleanup());

/** What bash's completion function offers for the words, the last one being completed. */
function bashComplete(words: string[]): string[] {
  const script = `source ${JSON.stringify(scripts.bash)}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}
_pilot_complete
printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = spawnSync('bash', ['--norc', '--noprofile', '-c', script], { cwd: h.home, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean).sort();
}

describe('pilot completion', () => {
  it('bash completes commands, subcommands, options, argument choices and option values', () => {
    assert.deepEqual(bashComplete(['pilot', 'ro']), ['rollback']);
    const top = bashComplete(['pilot', '']);
    for (const c of ['up', 'run', 'apps', 'status', 'doctor', 'init', 'completion', 'experiment'])
      assert.ok(top.includes(c), `${c} in ${top.join(' ')}`);
    assert.ok(!top.includes('router'), 'the hidden command is not offered');
    assert.ok(!top.includes('help'), 'help is not a command to complete');
    assert.deepEqual(bashComplete(['pilot', 'apps', '']), ['create', 'rm']);
    assert.deepEqual(bashComplete(['pilot', 'experiment', 's']), ['start', 'status']);
    assert.deepEqual(bashComplete(['pilot', 'completion', '']), ['bash', 'fish', 'zsh']);
    // options of the command, and the global ones
    const runOpts = bashComplete(['pilot', 'run', '--']);
    for (const o of ['--allow-dirty', '--dry-run', '--node', '--no-cache', '--server', '--json']) assert.ok(runOpts.includes(o), o);
    assert.ok(!runOpts.includes('--api-port'), "up's options are not run's");
    // a global option with a value before the command: the value is skipped, the command still found
    assert.deepEqual(bashComplete(['pilot', '--server', 'http://x:7070', 'apps', 'c']), ['create']);
    assert.deepEqual(bashComplete(['pilot', '--json', 'apps', 'r']), ['rm']);
    // the value of an option: file names of the current folder
    writeFileSync(join(h.home, 'token-file-xyz'), 'x');
    assert.deepEqual(bashComplete(['pilot', '--token-file', 'token-file-x']), ['token-file-xyz']);
    // a deeper option list
    assert.ok(bashComplete(['pilot', 'apps', 'create', '--']).includes('--repo'));
    // nothing matches: nothing offered (no error)
    assert.deepEqual(bashComplete(['pilot', 'zzz']), []);
  });

  it('zsh loads the script and completes through its own walk', { skip: has('zsh') ? false : 'zsh: not installed' }, () => {
    // _describe and _files are the completion system's; stand-ins print what they were given.
    const script = `source ${JSON.stringify(scripts.zsh)} 2>/dev/null || true
_describe() { print -l -- "\${(@P)4}" }
_files() { print FILES }
compdef() { : }
complete_words() { words=("$@"); CURRENT=$#; _pilot }
complete_words pilot ro; print -r -- ---
complete_words pilot apps ''; print -r -- ---
complete_words pilot run --; print -r -- ---
complete_words pilot --token-file ''`;
    const r = spawnSync('zsh', ['-f', '-c', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    const [first, apps, runOpts, files] = r.stdout.split('---\n').map((s) => s.split('\n').filter(Boolean));
    assert.ok(
      first!.some((l) => l.startsWith('rollback:')),
      first!.join('|'),
    );
    assert.deepEqual(
      apps!.map((l) => l.split(':')[0]),
      ['create', 'rm'],
    );
    assert.ok(
      runOpts!.some((l) => l.startsWith('--allow-dirty:')),
      runOpts!.join('|'),
    );
    assert.ok(
      runOpts!.some((l) => l.startsWith('--server:')),
      'global options too',
    );
    assert.deepEqual(files, ['FILES']);
    const syntax = spawnSync('zsh', ['-n', scripts.zsh!], { encoding: 'utf8' });
    assert.equal(syntax.status, 0, syntax.stderr);
  });

  it('fish completes through `complete -C`', { skip: has('fish') ? false : 'fish: not installed' }, () => {
    const ask = (line: string): string[] => {
      const r = spawnSync('fish', ['--no-config', '-c', `source ${JSON.stringify(scripts.fish)}; complete -C ${JSON.stringify(line)}`], {
        cwd: h.home,
        encoding: 'utf8',
        timeout: 30_000,
      });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split('\t')[0]!)
        .sort();
    };
    assert.deepEqual(ask('pilot ro'), ['rollback']);
    assert.deepEqual(ask('pilot apps '), ['create', 'rm']);
    assert.deepEqual(ask('pilot completion '), ['bash', 'fish', 'zsh']);
    assert.ok(ask('pilot run --').includes('--allow-dirty'));
    assert.deepEqual(ask('pilot --server http://x:7070 experiment e'), ['end']);
  });

  it('refuses a shell it does not know, naming the choices', async () => {
    const r = await h.cli(['completion', 'powershell']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bash, zsh, fish/);
  });
});
