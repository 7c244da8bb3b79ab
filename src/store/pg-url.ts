/**
 * A PostgreSQL URL as logs and messages show it: the password masked. Apart from the store so that
 * code which only names a database (start-up lines, `pilot status`, errors) does not load the `pg`
 * driver: a SQLite installation never loads it.
 */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}
