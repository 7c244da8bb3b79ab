/** `pilot gc [--dry-run] [--keep N]`: delete from the artifact repository what no revision worth keeping uses. */
import { apiClient, output, table, type GlobalOptions } from './context.js';

interface GcAnswer {
  deleted: { digest: string; size: number; app?: string }[];
  freedBytes: number;
  kept: number;
  dryRun: boolean;
}

const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MB`;

export async function gc(opts: GlobalOptions & { dryRun?: boolean; keep?: string }): Promise<void> {
  const body: Record<string, unknown> = {};
  if (opts.dryRun) body.dryRun = true;
  // Sent as typed: the server says what it accepts (a whole number 0-1000) when it is not that.
  if (opts.keep !== undefined) body.keep = opts.keep.trim() !== '' && Number.isFinite(Number(opts.keep)) ? Number(opts.keep) : opts.keep;
  const res = await apiClient(opts).call<GcAnswer>('POST', '/api/v1/artifacts/gc', body);
  output(opts, res, () => {
    const verb = res.dryRun ? 'would free' : 'freed';
    const head = `${verb} ${mb(res.freedBytes)}: ${res.deleted.length} artifact(s) ${res.dryRun ? 'to delete' : 'deleted'}, ${res.kept} kept`;
    if (res.deleted.length === 0) return head;
    return `${table(
      ['DIGEST', 'SIZE', 'APP'],
      res.deleted.map((b) => [b.digest.slice(0, 19), mb(b.size), b.app ?? '-']),
    )}\n${head}`;
  });
}
