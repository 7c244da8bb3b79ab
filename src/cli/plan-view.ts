/** How the CLI prints a deploy plan (`pilot run --dry-run`, `pilot rollback --dry-run`). */
import type { DeployPlanView } from '../api/wire.js';

/** The plan as lines: what would start where, what would stop, the replica count and its owner. */
export function planLines(p: DeployPlanView, what: string): string[] {
  const out = [`${what} (dry run: nothing was changed)`];
  const r = p.replicas;
  out.push(`  replicas: ${r.replicas} (set by ${r.source}${r.changed ? ', changed by this deploy' : ''}): ${r.why}`);
  const byNode = new Map<string, number>();
  for (const x of p.placements) byNode.set(x.node, (byNode.get(x.node) ?? 0) + 1);
  if (byNode.size > 0)
    out.push(
      `  would start ${p.placements.length} instance(s) of revision ${p.revision}: ${[...byNode].map(([n, k]) => `${k} on ${n}`).join(', ')}`,
    );
  if (p.unplaced) out.push(`  could not place ${p.unplaced.count} instance(s): ${p.unplaced.reason}`);
  if (p.stops.length === 0) out.push('  would stop nothing');
  else {
    out.push(
      `  would stop ${p.stops.length} instance(s) ${p.recreate ? 'first (recreate: they free the fixed port before the new ones start)' : 'once the new ones are ready (drained first)'}:`,
    );
    for (const s of p.stops) out.push(`    ${s.id} (revision ${s.revision}) on ${s.node}`);
  }
  for (const n of p.notes) out.push(`  note: ${n}`);
  return out;
}
