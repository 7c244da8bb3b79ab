/**
 * A list of control-plane addresses as a user gives it (`--server http://cp1:7070,http://cp2:7070`,
 * `PILOT_SERVER` with commas): parsed once, every entry checked, so a typo is refused at start
 * naming the entry instead of surfacing later as "cannot reach".
 */
import { fail } from '../core/errors.js';

/**
 * The entries of `text` (comma-separated), each without trailing slashes. Refused, naming the
 * entry: an empty entry ("a,,b", a trailing comma), anything but an http(s) URL, a URL with a
 * user or password in it (it would be logged), and the same address twice. `source` says where
 * the list came from (`--server`, `PILOT_SERVER`) for the error.
 */
export function parseServerList(text: string, source: string): string[] {
  const entries = text.split(',').map((s) => s.trim());
  const out: string[] = [];
  const seen = new Map<string, number>();
  entries.forEach((raw, i) => {
    const position = i + 1;
    if (raw === '') throw fail.serverListEmptyEntry({ source, position, count: entries.length });
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw fail.serverListBadEntry({ source, entry: raw, why: 'not a URL' });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw fail.serverListBadEntry({ source, entry: raw, why: `${url.protocol.replace(/:$/, '')}: is not http or https` });
    if (url.username !== '' || url.password !== '')
      throw fail.serverListBadEntry({ source, entry: redact(url), why: 'a user or password in the URL would end up in logs' });
    if (url.search !== '' || url.hash !== '')
      throw fail.serverListBadEntry({ source, entry: raw, why: 'a base URL has no ?query or #fragment' });
    const entry = raw.replace(/\/+$/, '');
    // Compare as URLs (case of the host, default ports), report as typed.
    const key = url.href.replace(/\/+$/, '');
    const first = seen.get(key);
    if (first !== undefined) throw fail.serverListDuplicate({ source, entry, first, position });
    seen.set(key, position);
    out.push(entry);
  });
  return out;
}

function redact(url: URL): string {
  const u = new URL(url.href);
  u.username = '';
  u.password = '';
  return u.href.replace(/\/+$/, '');
}
