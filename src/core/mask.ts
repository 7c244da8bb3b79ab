/**
 * Log hygiene. `maskSecrets` hides secret values (and their base64 forms) in a log line;
 * `sanitizeLine` makes untrusted text (commit messages, branch names, build output) safe to show:
 * terminal escape sequences and other control characters are escaped, and length is capped. Pure.
 */
const MIN_SECRET_LENGTH = 4; // masking "a" would shred every line; such values are not secrets

function forms(value: string): string[] {
  const out = new Set<string>([value]);
  const b64 = Buffer.from(value, 'utf8').toString('base64');
  out.add(b64);
  out.add(b64.replace(/=+$/, ''));
  out.add(Buffer.from(value, 'utf8').toString('base64url'));
  // As error messages quote it: JSON-escaped, and with control characters as \xNN (util.inspect).
  out.add(JSON.stringify(value).slice(1, -1));
  out.add(value.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
  return [...out].filter((f) => f.length >= MIN_SECRET_LENGTH).sort((a, b) => b.length - a.length);
}

/** A function that replaces every secret value (plain and base64) in a line with `***`. */
export function secretMasker(values: readonly string[]): (line: string) => string {
  // Longest first across all values: a secret that contains another must be masked whole.
  const all = [...new Set(values.flatMap(forms))].sort((a, b) => b.length - a.length);
  if (all.length === 0) return (line) => line;
  return (line) => {
    let out = line;
    for (const f of all) if (out.includes(f)) out = out.split(f).join('***');
    return out;
  };
}

/** Escape control characters (ANSI escapes included) and cap the length: untrusted text made showable. */
export function sanitizeLine(text: string, maxChars = 4000): string {
  let out = text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  if (out.length > maxChars) out = `${out.slice(0, maxChars)}… (${out.length - maxChars} more characters)`;
  return out;
}
