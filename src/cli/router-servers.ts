/** `pilot router --server URL[,URL…]`: where a router on its own machine finds the control plane, and its token. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseServerList } from '../api/server-list.js';
import { fail } from '../core/errors.js';
import type { GlobalOptions } from './context.js';
import { secretFrom } from './secret-input.js';

/**
 * With --server: the replicas (each entry checked) and the router token (--token-file,
 * PILOT_ROUTER_TOKEN, else $PILOT_HOME/router-token, re-read at each sync). Without: nothing, the
 * router follows the control plane $PILOT_HOME/server.json names (`pilot up` / `pilot server`).
 * PILOT_SERVER is not read here: a router supervised by `pilot up` must not follow another server
 * because the user's shell has one set.
 */
export function routerServers(g: GlobalOptions, home: string): { servers?: string[]; token?: () => string } {
  if (g.server === undefined) return {};
  const servers = parseServerList(g.server, '--server');
  const given = secretFrom({ value: g.token, flag: '--token', file: g.tokenFile, fileFlag: '--token-file', env: 'PILOT_ROUTER_TOKEN' });
  if (given) return { servers, token: () => given };
  const file = join(home, 'router-token');
  if (!existsSync(file)) throw fail.routerNeedsToken({ file });
  return { servers, token: () => readFileSync(file, 'utf8').trim() };
}
