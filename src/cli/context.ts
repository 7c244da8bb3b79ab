/** What every command needs: where $PILOT_HOME is, which server to talk to, with which token, and how to print. */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ApiClient } from '../api/client.js';
import { parseServerList } from '../api/server-list.js';
import { isPilotError, fail } from '../core/errors.js';
import { secretFrom } from './secret-input.js';
import { style, visibleLength } from './style.js';

export interface GlobalOptions {
  server?: string;
  token?: string;
  /** File holding the token (- for stdin): --token-file. */
  tokenFile?: string;
  json?: boolean;
}

export function pilotHome(): string {
  return resolve(process.env.PILOT_HOME ?? '.pilot');
}

export interface ServerFile {
  api: string;
  router: string;
  pid: number;
  /** What serves app traffic: the embedded router (pilot) or HAProxy (absent: written by an older `pilot up`). */
  routerKind?: 'pilot' | 'haproxy';
  /** The ACME directory certificates come from, when HTTPS with ACME is on. */
  acmeDirectory?: string;
}

export function readServerFile(home = pilotHome()): ServerFile | undefined {
  try {
    return JSON.parse(readFileSync(join(home, 'server.json'), 'utf8')) as ServerFile;
  } catch {
    return undefined;
  }
}

/**
 * The server to talk to: --server, PILOT_SERVER, else the one `pilot up` recorded (undefined: none
 * known). Several replicas' addresses, comma-separated, are checked entry by entry
 * (api/server-list.ts) and come back normalised, still comma-separated: ApiClient fails over between them.
 */
export function serverUrl(opts: GlobalOptions, home = pilotHome()): string | undefined {
  const env = process.env.PILOT_SERVER;
  const server = opts.server ?? env ?? readServerFile(home)?.api;
  if (!server) return undefined;
  const source = opts.server !== undefined ? '--server' : env !== undefined ? 'PILOT_SERVER' : join(home, 'server.json');
  return parseServerList(server, source).join(',');
}

/** The admin token: --token(-file), PILOT_TOKEN, else $PILOT_HOME/admin-token (undefined: none). */
export function adminToken(opts: GlobalOptions, home = pilotHome()): string | undefined {
  // --token works but shows in `ps`: --token-file, PILOT_TOKEN or the admin-token file do not.
  const token = secretFrom({ value: opts.token, flag: '--token', file: opts.tokenFile, fileFlag: '--token-file', env: 'PILOT_TOKEN' });
  if (token) return token;
  const tokenFile = join(home, 'admin-token');
  return existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() || undefined : undefined;
}

/** The API client: --server, PILOT_SERVER, else the server `pilot up` recorded; token likewise. */
export function apiClient(opts: GlobalOptions): ApiClient {
  const home = pilotHome();
  const server = serverUrl(opts, home);
  if (!server) {
    throw fail.noServerKnown({ home });
  }
  const token = adminToken(opts, home);
  if (!token) throw fail.noAdminToken({ tokenFile: join(home, 'admin-token') });
  return new ApiClient(server, token);
}

/**
 * The port of the router of this machine's `pilot up` (from $PILOT_HOME/server.json), when the
 * server the command talks to is that one; undefined otherwise (the API's URLs have no port).
 */
export function routerPort(opts: GlobalOptions): string | undefined {
  const f = readServerFile();
  if (!f?.router || serverUrl(opts) !== f.api.replace(/\/+$/, '')) return undefined;
  try {
    const u = new URL(f.router);
    return u.port || (u.protocol === 'https:' ? '443' : '80');
  } catch {
    return undefined;
  }
}

/** `http://shop.localhost` with the router's port: `http://shop.localhost:8080` (80: unchanged). */
export function withPort(url: string, port: string | undefined): string {
  if (port === undefined || port === '80') return url;
  try {
    const u = new URL(url);
    if (u.port !== '') return url;
    u.port = port;
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

/** Print `data` as JSON (with --json) or as the human text `render` makes. */
export function output(opts: GlobalOptions, data: unknown, render: () => string): void {
  if (opts.json) process.stdout.write(JSON.stringify(data, null, 2) + '\n');
  else process.stdout.write(render() + '\n');
}

/** A plain text table: columns padded to their widest cell. */
export function table(head: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = [head, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))))];
  // Cells may be coloured (style.ts): widths count what is visible.
  const widths = head.map((_, i) => Math.max(...cells.map((r) => visibleLength(r[i] ?? ''))));
  const pad = (c: string, w: number): string => c + ' '.repeat(Math.max(0, w - visibleLength(c)));
  const bold = style().bold;
  return cells
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : pad(c, widths[i]!))).join('  '))
    .map((line, row) => (row === 0 ? bold(line) : line))
    .join('\n');
}

export function ago(ms: number | null | undefined): string {
  if (!ms) return '-';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** Print an error the way every command does (message, then hint) and set a failing exit code. */
export function reportError(err: unknown, json: boolean | undefined): void {
  const pe = isPilotError(err) ? err : fail.unexpected({ message: String((err as Error)?.message ?? err) });
  if (json) process.stderr.write(JSON.stringify({ error: pe.toJSON() }) + '\n');
  else {
    process.stderr.write(`error: ${pe.message}\n`);
    if (pe.hint) process.stderr.write(`hint: ${pe.hint}\n`);
  }
  process.exitCode = pe.code === 'internal' ? 70 : 1;
}
