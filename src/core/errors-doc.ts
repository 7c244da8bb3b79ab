import { CATALOGUE, ERROR_AREAS, type ErrorEntry } from './errors.js';

/** A parameter shown as its name: a string, or a list of that one string (spread, joined or mapped). */
class Placeholder extends String {
  override *[Symbol.iterator](): StringIterator<string> {
    yield this.toString();
  }

  join(): string {
    return this.toString();
  }

  map<T>(f: (item: string) => T): T[] {
    return [f(this.toString())];
  }
}

/** Parameters that read as their own names: `app "<app>" not found`. */
export const PLACEHOLDERS: Readonly<Record<string, unknown>> = new Proxy({} as Record<string, unknown>, {
  get: (_t, key) => (typeof key === 'string' ? new Placeholder(`<${key}>`) : undefined),
});

function cell(text: string | undefined): string {
  if (text === undefined || text === '') return '';
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\n/g, ' ⏎ ');
}

function text(t: ErrorEntry['message'] | ErrorEntry['hint']): string | undefined {
  const out = typeof t === 'function' ? t(PLACEHOLDERS as never) : t;
  return out === undefined ? undefined : String(out);
}

/** docs/errors.md: every wire code, then every entry by area with its message and hint (parameters as `<name>`). */
export function errorsMarkdown(): string {
  const lines = [
    '# Errors',
    '',
    'Written by `npm run docs:errors` from `src/core/errors/` (do not edit by hand; a test checks it is current).',
    'Clients branch on the **code**; the message and hint are for people. Parameters show as `<name>`.',
    '',
    '## Codes',
    '',
    '| code | HTTP status | retryable | default hint |',
    '|---|---|---|---|',
  ];
  for (const [code, c] of Object.entries(CATALOGUE)) {
    lines.push(`| \`${code}\` | ${c.status} | ${c.retryable ? 'yes' : 'no'} | ${cell('hint' in c ? c.hint : undefined)} |`);
  }
  for (const [area, entries] of Object.entries(ERROR_AREAS)) {
    lines.push('', `## ${area}`, '', `Raised in \`src/${area}/\`.`, '', '| entry | code | message | hint |', '|---|---|---|---|');
    for (const [name, e] of Object.entries(entries)) {
      lines.push(`| \`${name}\` | \`${e.code}\` | ${cell(text(e.message))} | ${cell(text(e.hint))} |`);
    }
  }
  return lines.join('\n') + '\n';
}
