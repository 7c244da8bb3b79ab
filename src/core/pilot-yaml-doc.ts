/**
 * docs/pilot-yaml.md, written from the JSON Schema of pilot.yaml (app-config.ts, published as
 * schema/pilot.schema.json), so the reference cannot drift from what the validator accepts: every
 * field (nested ones as dotted paths, array items as `[]`, free-form keys as `<KEY>`), its type,
 * its constraints, whether it is required, and the schema's description.
 * `npm run docs:reference` writes it; `pilot-yaml-doc.test.ts` fails when it is stale.
 */

/** The part of a JSON Schema node this walk reads. */
interface SchemaNode {
  readonly type?: string;
  readonly description?: string;
  readonly const?: unknown;
  readonly anyOf?: readonly SchemaNode[];
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly patternProperties?: Readonly<Record<string, SchemaNode>>;
  readonly items?: SchemaNode;
  readonly required?: readonly string[];
  readonly [constraint: string]: unknown;
}

interface FieldRow {
  readonly path: string;
  readonly type: string;
  readonly rules: string;
  readonly required: boolean;
  readonly description: string;
}

/** A type as people read it: `string`, `"a" \| "b"`, `string or string[]`, `integer 1-100`. */
function typeOf(n: SchemaNode): string {
  if (n.const !== undefined) return JSON.stringify(n.const);
  if (n.anyOf) return [...new Set(n.anyOf.map(typeOf))].join(' or ');
  if (n.type === 'array') return n.items ? `${bracket(typeOf(n.items))}[]` : 'array';
  return n.type ?? 'any';
}

function bracket(t: string): string {
  return t.includes(' or ') ? `(${t})` : t;
}

const RULES: readonly [string, (v: unknown) => string][] = [
  ['minimum', (v) => `≥ ${String(v)}`],
  ['exclusiveMinimum', (v) => `> ${String(v)}`],
  ['maximum', (v) => `≤ ${String(v)}`],
  ['exclusiveMaximum', (v) => `< ${String(v)}`],
  ['minLength', (v) => `length ≥ ${String(v)}`],
  ['maxLength', (v) => `length ≤ ${String(v)}`],
  ['minItems', (v) => `items ≥ ${String(v)}`],
  ['maxItems', (v) => `items ≤ ${String(v)}`],
  ['pattern', (v) => `pattern \`${String(v)}\``],
];

/** Constraints of a node and of its alternatives (`anyOf`), as one line. */
function rulesOf(n: SchemaNode): string {
  const own = RULES.filter(([k]) => n[k] !== undefined).map(([k, f]) => f(n[k]));
  const alts = flat(n.anyOf ?? [])
    .map((a) => {
      const r = RULES.filter(([k]) => a[k] !== undefined).map(([k, f]) => f(a[k]));
      return r.length > 0 ? `${typeOf(a)}: ${r.join(', ')}` : '';
    })
    .filter((s) => s !== '');
  return [...own, ...alts].join('; ');
}

/** Alternatives of alternatives, as one list. */
function flat(alts: readonly SchemaNode[]): SchemaNode[] {
  return alts.flatMap((a) => (a.anyOf ? flat(a.anyOf) : [a]));
}

/** The object schema inside a node (itself, or the object alternative of an `anyOf`). */
function objectOf(n: SchemaNode): SchemaNode | undefined {
  if (n.type === 'object') return n;
  return n.anyOf?.find((a) => a.type === 'object');
}

function walk(n: SchemaNode, path: string, required: boolean, rows: FieldRow[]): void {
  rows.push({ path, type: typeOf(n), rules: rulesOf(n), required, description: n.description ?? '' });
  const obj = objectOf(n);
  if (obj) children(obj, path, rows);
  const items = n.type === 'array' ? n.items : n.anyOf?.find((a) => a.type === 'array')?.items;
  if (items && objectOf(items)) children(objectOf(items)!, `${path}[]`, rows);
}

function children(obj: SchemaNode, prefix: string, rows: FieldRow[]): void {
  const req = new Set(obj.required ?? []);
  for (const [k, v] of Object.entries(obj.properties ?? {})) walk(v, prefix ? `${prefix}.${k}` : k, req.has(k), rows);
  for (const [pattern, v] of Object.entries(obj.patternProperties ?? {})) {
    const row = { path: `${prefix}.<KEY>`, type: typeOf(v), rules: `key: pattern \`${pattern}\`${rulesOf(v) ? '; ' + rulesOf(v) : ''}` };
    rows.push({ ...row, required: false, description: v.description ?? '' });
  }
}

/** Every field of the schema, in the schema's order (a field, then its own fields). */
export function pilotYamlFields(schema: SchemaNode): FieldRow[] {
  const rows: FieldRow[] = [];
  children(schema, '', rows);
  return rows;
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The whole of docs/pilot-yaml.md. */
export function pilotYamlMarkdown(schema: SchemaNode): string {
  const lines = [
    '# pilot.yaml reference',
    '',
    '<!-- Generated from schema/pilot.schema.json (src/core/app-config.ts) by `npm run docs:reference`; do not edit. -->',
    '',
    'Every field of `pilot.yaml`, the optional file at an app\'s root (see the README\'s "Your own app").',
    'Nested fields are written as dotted paths, items of a list as `[]`, free-form keys as `<KEY>`.',
    'Unknown fields are refused. Point your editor at `schema/pilot.schema.json` for completion.',
    '',
    '| field | type | rules | required | description |',
    '|---|---|---|---|---|',
  ];
  for (const r of pilotYamlFields(schema)) {
    lines.push(`| \`${r.path}\` | ${cell(r.type)} | ${cell(r.rules)} | ${r.required ? 'yes' : ''} | ${cell(r.description)} |`);
  }
  return lines.join('\n') + '\n';
}
