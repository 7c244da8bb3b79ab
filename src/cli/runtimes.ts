/** `pilot runtimes` (cached Node.js runtimes and the apps using them), `pilot runtimes add VERSION --from FILE.tgz`. */
import { resolve } from 'node:path';
import { importRuntime } from '../node-runtime/import.js';
import { apiClient, ago, output, table, type GlobalOptions } from './context.js';
import { fail } from '../core/errors.js';

interface RuntimeRow {
  version: string;
  platform: string;
  digest: string;
  size: number;
  origin: string;
  createdAt: number;
  apps: string[];
  revisions: number;
}

const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MB`;

export async function runtimes(opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ runtimes: RuntimeRow[] }>('GET', '/api/v1/runtimes');
  output(opts, res, () =>
    res.runtimes.length === 0
      ? 'no Node.js runtimes cached yet: `pilot run` fetches the one an app pins, `pilot runtimes add VERSION --from FILE.tgz` imports one'
      : table(
          ['NODE', 'PLATFORM', 'SIZE', 'DIGEST', 'ORIGIN', 'ADDED', 'APPS'],
          res.runtimes.map((r) => [
            r.version,
            r.platform,
            mb(r.size),
            r.digest.slice(0, 19),
            r.origin,
            ago(r.createdAt),
            r.apps.length > 0 ? r.apps.join(',') : `- (${r.revisions} revision(s))`,
          ]),
        ),
  );
}

export async function runtimesAdd(
  version: string,
  opts: GlobalOptions & { from?: string; integrity?: string; offline?: boolean },
): Promise<void> {
  if (opts.from === undefined) {
    throw fail.runtimesAddNeedsFile();
  }
  const r = await importRuntime({
    version,
    file: resolve(opts.from),
    integrity: opts.integrity,
    offline: opts.offline,
    api: apiClient(opts),
  });
  output(
    opts,
    r,
    () =>
      `Node.js ${r.runtime.version} (${r.runtime.platform}) ${r.created ? 'imported' : 'was already recorded'}: ${r.runtime.digest} (${mb(r.runtime.size)}); integrity ${r.integrityCheck}`,
  );
}
