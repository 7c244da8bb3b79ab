import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PLACEHOLDERS } from './errors-doc.js';
import { CATALOGUE, ERROR_AREAS, PilotError, fail, fromBody, isPilotError, restate, type ErrorCode, type ErrorExtra } from './errors.js';

/** Parameters for any entry: every parameter reads as its own name in angle brackets. */
const sample = PLACEHOLDERS;
const entries = Object.entries(ERROR_AREAS).flatMap(([area, list]) => Object.entries(list).map(([name, entry]) => ({ area, name, entry })));
const render = (t: string | ((p: never) => string | undefined) | undefined): string | undefined => {
  const out = typeof t === 'function' ? t(sample as never) : t;
  return out === undefined ? undefined : String(out);
};

/** Every .ts file under src/ that is not a test, with its text. */
function sources(dir = new URL('../../../src', import.meta.url).pathname): { file: string; text: string }[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return p.endsWith('.ts') && !p.endsWith('.test.ts') ? [{ file: p, text: readFileSync(p, 'utf8') }] : [];
  });
}

describe('the error catalogue', () => {
  it('has codes in snake_case with an HTTP error status, a retryable flag and at most one default hint', () => {
    for (const [code, c] of Object.entries(CATALOGUE) as [ErrorCode, (typeof CATALOGUE)[ErrorCode]][]) {
      assert.match(code, /^[a-z]+(_[a-z0-9]+)*$/, code);
      assert.ok(Number.isInteger(c.status) && c.status >= 400 && c.status <= 599, `${code}: status ${c.status}`);
      assert.equal(typeof c.retryable, 'boolean', code);
      if ('hint' in c) assert.ok(c.hint.length > 10, `${code}: an empty hint`);
    }
  });

  it('has entries with unique camelCase names across all areas, each on a known code', () => {
    const seen = new Map<string, string>();
    for (const { area, name, entry } of entries) {
      assert.match(name, /^[a-z][a-zA-Z0-9]*$/, `${area}.${name}`);
      assert.equal(seen.get(name), undefined, `${name} is in both ${seen.get(name)} and ${area}`);
      seen.set(name, area);
      assert.ok(entry.code in CATALOGUE, `${area}.${name}: unknown code ${entry.code}`);
    }
    assert.ok(entries.length > 300, `only ${entries.length} entries`);
  });

  it('gives every entry a non-empty message, and a hint where it has one, for any parameters', () => {
    for (const { area, name, entry } of entries) {
      const message = render(entry.message);
      assert.ok(typeof message === 'string' && message.trim().length > 0, `${area}.${name}: empty message`);
      assert.doesNotMatch(message, /undefined|\[object /, `${area}.${name}: ${message}`);
      const hint = render(entry.hint);
      if (hint !== undefined) {
        assert.ok(hint.trim().length > 0, `${area}.${name}: empty hint`);
        assert.doesNotMatch(hint, /undefined|\[object /, `${area}.${name}: ${hint}`);
      }
    }
  });

  it('makes each error with its code, status, retryable flag, message and hint', () => {
    for (const { area, name, entry } of entries) {
      // An entry with functions takes its parameters first; one without takes only the extra.
      const make = (fail as unknown as Record<string, (a?: unknown, b?: ErrorExtra) => PilotError>)[name]!;
      const takesParams = typeof entry.message === 'function' || typeof entry.hint === 'function';
      const e = takesParams ? make(sample, { details: { n: 1 } }) : make({ details: { n: 1 } });
      assert.ok(isPilotError(e), `${area}.${name}`);
      assert.equal(e.code, entry.code);
      assert.equal(e.status, CATALOGUE[entry.code].status);
      assert.equal(e.retryable, CATALOGUE[entry.code].retryable);
      assert.equal(e.message, render(entry.message));
      const hint = render(entry.hint) ?? (CATALOGUE[entry.code] as { hint?: string }).hint;
      assert.deepEqual(JSON.parse(JSON.stringify(e.toJSON())), {
        code: entry.code,
        message: e.message,
        ...(hint === undefined ? {} : { hint }),
        retryable: CATALOGUE[entry.code].retryable,
        details: { n: 1 },
      });
    }
  });

  it('fills messages and hints from the parameters, word for word, and falls back to the code hint', () => {
    const e = fail.appNotFound({ app: 'web' });
    assert.equal(e.message, 'app "web" not found');
    assert.equal(e.code, 'app_not_found');
    assert.equal(e.hint, CATALOGUE.app_not_found.hint);
    assert.equal(e.status, 404);
    const spawn = fail.commandNotFound({ file: 'yarn', where: ' on PATH (/usr/bin)' });
    assert.equal(spawn.message, '`yarn` not found on PATH (/usr/bin)');
    assert.match(spawn.hint ?? '', /Pilot provides yarn when the app uses it: add a yarn\.lock/);
    assert.equal(
      fail.commandNotFound({ file: 'make', where: '' }).hint,
      'Install it on the build machine, or change the build commands in pilot.yaml.',
    );
    // A hint function that returns undefined leaves the code's default hint.
    assert.equal(fail.cannotPlace({ name: 'web', reason: 'no node', noEngine: false }).hint, CATALOGUE.unschedulable.hint);
    // An entry without parameters takes the extra as its only argument.
    const cause = new Error('boom');
    const internal = fail.internalError({ cause });
    assert.equal(internal.message, 'internal error');
    assert.equal(internal.cause, cause);
    assert.equal(fail.requestBodyTooLarge().details, undefined);
  });

  it('quotes user input in messages as JSON, so a hostile value stays one visible string', () => {
    const hostile = 'x"\n\u0000$(reboot)';
    const e = fail.invalidBranch({ branch: hostile });
    assert.equal(e.message, `branch ${JSON.stringify(hostile)} is not a valid git branch name`);
    assert.ok(!e.message.includes('\n'));
  });

  it('asks the call site for exactly the parameters an entry needs (checked by tsc)', () => {
    const unused = (): PilotError[] => [
      // @ts-expect-error appNotFound needs { app }
      fail.appNotFound(),
      // @ts-expect-error a parameter of the wrong type
      fail.appNotFound({ app: 7 }),
      // @ts-expect-error a parameter the entry does not have
      fail.appNotFound({ app: 'web', node: 'n1' }),
      // @ts-expect-error an entry that does not exist
      fail.noSuchEntry({}),
    ];
    assert.equal(typeof unused, 'function');
  });

  it('restates an error: same code, a masked message or a sharper hint, no details', () => {
    const e = fail.appNotFound({ app: 'web' }, { details: { secret: 1 } });
    const masked = restate(e, { message: 'app "***" not found' });
    assert.equal(masked.code, 'app_not_found');
    assert.equal(masked.message, 'app "***" not found');
    assert.equal(masked.hint, e.hint);
    assert.equal(masked.details, undefined);
    assert.equal(restate(e, { hint: 'Try again.' }).hint, 'Try again.');
    const custom = fail.invalidTrafficWindow({ problem: 'bad window' });
    assert.equal(restate(custom, { hint: undefined }).hint, undefined, 'bad_request has no default hint');
  });

  it('is the only place that constructs a PilotError, and every entry is raised somewhere', () => {
    const src = sources();
    const free = src.filter((s) => !s.file.endsWith('/src/core/errors.ts') && /new PilotError\(/.test(s.text));
    assert.deepEqual(
      free.map((s) => s.file),
      [],
    );
    // `fail.name(` or, where the catalogue is loaded lazily (the CLI's start-up), `(await fail()).name(`.
    const used = new Set(src.flatMap((s) => [...s.text.matchAll(/\bfail(?:\.|\(\)\)\.)([a-zA-Z0-9]+)\b/g)].map((m) => m[1])));
    const unused = entries.filter((e) => !used.has(e.name)).map((e) => `${e.area}.${e.name}`);
    assert.deepEqual(unused, []);
  });
});

describe('the lint rule that keeps free-text errors out', () => {
  it('refuses new PilotError in production code, and allows it in errors.ts and in tests', async () => {
    const { ESLint } = await import('eslint');
    const root = new URL('../../../', import.meta.url).pathname;
    const eslint = new ESLint({ cwd: root });
    const code = "import { PilotError } from '../core/errors.js';\nexport const e = new PilotError('internal', 'free text');\n";
    // lintText with a file path the project's tsconfig covers (typed linting needs one): a real source file's name.
    const [inCli] = await eslint.lintText(code, { filePath: join(root, 'src/cli/runtimes.ts') });
    assert.deepEqual(
      inCli!.messages.filter((m) => m.ruleId === 'no-restricted-syntax').map((m) => m.line),
      [2],
    );
    const rules = async (file: string): Promise<unknown> =>
      ((await eslint.calculateConfigForFile(join(root, file))) as { rules?: Record<string, unknown> }).rules?.['no-restricted-syntax'];
    assert.equal(await rules('src/core/errors.ts'), undefined);
    assert.equal(await rules('src/core/errors.test.ts'), undefined);
  });
});

describe('fromBody (errors received over the wire)', () => {
  it('rebuilds code, message, hint, retryable and details', () => {
    const sent = fail
      .rolloutFailed({ rolloutId: 3, first: 'crashed', kept: 'revision 2 keeps serving', rest: ['  last output'], app: 'web' })
      .toJSON();
    const got = fromBody(JSON.parse(JSON.stringify(sent)), 'fallback');
    assert.ok(got instanceof PilotError);
    assert.deepEqual(got.toJSON(), sent);
    assert.equal(got.status, 422);
  });

  it('keeps the hint the server chose, and the code default when there was none', () => {
    assert.equal(fromBody({ code: 'app_not_found', message: 'm', retryable: false }, 'f').hint, CATALOGUE.app_not_found.hint);
    assert.equal(fromBody({ code: 'app_not_found', message: 'm', hint: 'h', retryable: false }, 'f').hint, 'h');
  });

  it('maps a code it does not know (a newer server) to internal, keeping the message and hint', () => {
    const e = fromBody({ code: 'quota_exceeded_v9', message: 'over quota', hint: 'buy more', retryable: false }, 'fallback');
    assert.equal(e.code, 'internal');
    assert.equal(e.message, 'over quota');
    assert.equal(e.hint, 'buy more');
  });

  it('uses the fallback text for an empty or missing body', () => {
    assert.equal(fromBody(undefined, 'HTTP 502').message, 'HTTP 502');
    assert.equal(fromBody({}, 'HTTP 500').code, 'internal');
  });
});
