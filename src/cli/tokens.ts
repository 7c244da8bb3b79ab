/** `pilot token create --join`, `pilot token list`, `pilot token revoke ID`. */
import type { JoinTokenView } from '../api/wire.js';
import { fail } from '../core/errors.js';
import { ago, apiClient, output, table, type GlobalOptions } from './context.js';

/** `pilot token create --join`, `pilot token list`, `pilot token revoke ID`. */
export async function token(
  action: 'create' | 'list' | 'revoke',
  id: string | undefined,
  opts: GlobalOptions & { join?: boolean },
): Promise<void> {
  const api = apiClient(opts);
  if (action === 'create') {
    if (!opts.join) throw fail.tokenCreateNeedsKind();
    const res = await api.call<{ id: string; token: string; note: string }>('POST', '/api/v1/tokens/join');
    output(
      opts,
      res,
      () =>
        `join token ${res.id} (shown once):\n  ${res.token}\nuse it with: PILOT_JOIN_TOKEN=${res.token} pilot agent --server ${api.servers.toString()} --name NAME --address ADDRESS\n(or save it in a file and pass --token-file FILE; on the command line it would show in ps)`,
    );
  } else if (action === 'list') {
    const res = await api.call<{ tokens: JoinTokenView[] }>('GET', '/api/v1/tokens/join');
    output(opts, res, () =>
      table(
        ['ID', 'CREATED', 'REVOKED'],
        res.tokens.map((t) => [t.id, ago(t.createdAt), t.revokedAt ? ago(t.revokedAt) : null]),
      ),
    );
  } else {
    if (!id) throw fail.tokenRevokeNeedsId();
    const res = await api.call<{ revoked: string }>('DELETE', `/api/v1/tokens/join/${encodeURIComponent(id)}`);
    output(
      opts,
      res,
      () => `join token ${res.revoked} revoked: agents can no longer register with it (registered nodes keep their own credentials)`,
    );
  }
}
