/**
 * The traffic figures from HAProxy's own counters (`router.traffic: stats`, README "HAProxy as the
 * router"): instead of a log line per request (traffic-log.ts, 1-2 µs of HAProxy and 4-7 µs of the
 * router process per request), the router process reads `show stat` every few seconds and counts
 * what each row grew by since the last read into the same per-revision windows.
 *
 *   show stat rows ──► growth since the last read, per row ──► server rows  (app_<app>/sK, pin<k>_<app>/sK):
 *                                                               the slot's instance → its revision
 *                                                          ──► backend rows minus their servers:
 *                                                               HAProxy's own answers (502: no ready instance)
 *                                                          ──► the frontend minus every backend:
 *                                                               its own answers (404: unknown host), app ""
 *
 * What it gives up against the log: status classes (200/300/400/500 stand for their class, not
 * the exact code), one latency per row and read (HAProxy's `ttime`, the average total time of
 * that server's last 1,024 requests) instead of each request's, so percentiles are of averages;
 * and counts land in the window up to one interval late. A counter that went down (a reload or a
 * restart started a new worker from 0) counts from 0.
 */
import type { TrafficLineSink } from './traffic-log.js';

/** The `show stat` columns read here. */
const CLASSES = ['hrsp_1xx', 'hrsp_2xx', 'hrsp_3xx', 'hrsp_4xx', 'hrsp_5xx'] as const;
/** Every column `count` reads (and inflight's scur/qcur), for runtime.ts parseStat's `only`. */
export const STAT_COLUMNS: readonly string[] = ['pxname', 'svname', ...CLASSES, 'cli_abrt', 'ttime', 'scur', 'qcur'];
/** The code a class is counted as. */
const CLASS_CODE = [100, 200, 300, 400, 500] as const;
/** nginx's "client closed request", as the log and the embedded router count an aborted request. */
const CLIENT_CLOSED = 499;
/** Counts of one row: the five classes, then client aborts. */
type Counts = readonly number[];

/** Where a server row's requests go: the instance its slot serves (undefined: an empty slot). */
export type SlotResolver = (backend: string, server: string) => { app: string; revision: number | undefined } | undefined;

/** The app of a backend Pilot generated (config.ts names them app_<app> and pin<k>_<app>). */
export function appOfBackend(backend: string): string | undefined {
  return /^(?:app|pin\d+)_(.+)$/.exec(backend)?.[1];
}

function countsOf(row: Record<string, string>): Counts {
  return [...CLASSES.map((c) => Number(row[c]) || 0), Number(row.cli_abrt) || 0];
}

export class TrafficStats {
  /** The last counts read, by "pxname/svname". */
  #last = new Map<string, Counts>();

  constructor(
    private readonly sink: TrafficLineSink,
    /** The frontend's name in the configuration. */
    private readonly frontend = 'pilot',
  ) {}

  /** Forget the last counts (a new worker counts from 0): the next read counts everything it shows. */
  reset(): void {
    this.#last.clear();
  }

  /** Count the growth of these rows (`show stat`, runtime.ts parseStat) since the last read. Returns the requests counted. */
  count(rows: readonly Record<string, string>[], resolve: SlotResolver, logged: ReadonlySet<string> = new Set()): number {
    const next = new Map<string, Counts>();
    let counted = 0;
    /** Growth per backend of its server rows, and of every backend (for the frontend). */
    const servedByServers = new Map<string, number[]>();
    const servedByBackends = [0, 0, 0, 0, 0, 0];
    const grown = (key: string, now: Counts): number[] => {
      next.set(key, now);
      const was = this.#last.get(key);
      // A counter below its last value: a new worker (reload, restart) that started from 0.
      if (was === undefined || now.some((n, i) => n < (was[i] ?? 0))) return [...now];
      return now.map((n, i) => n - (was[i] ?? 0));
    };
    const record = (app: string, revision: number | undefined, d: readonly number[], ms: number): void => {
      for (let c = 0; c < CLASS_CODE.length; c++)
        for (let n = 0; n < d[c]!; n++) this.sink.request(app, revision, CLASS_CODE[c]!, ms / 1000);
      for (let n = 0; n < (d[5] ?? 0); n++) this.sink.request(app, revision, CLIENT_CLOSED, ms / 1000);
      counted += d.reduce((a, b) => a + b, 0);
    };
    const servers = rows.filter((r) => r.svname !== 'FRONTEND' && r.svname !== 'BACKEND');
    for (const r of servers) {
      const app = appOfBackend(r.pxname ?? '');
      if (app === undefined || r.svname === undefined) continue;
      const d = grown(`${r.pxname}/${r.svname}`, countsOf(r));
      const sum = servedByServers.get(r.pxname!) ?? [0, 0, 0, 0, 0, 0];
      d.forEach((n, i) => (sum[i]! += n));
      servedByServers.set(r.pxname!, sum);
      // An app whose requests the log counts (mode `auto`): its growth is only remembered.
      if (d.every((n) => n === 0) || logged.has(app)) continue;
      const at = resolve(r.pxname!, r.svname);
      record(at?.app ?? app, at?.revision, d, Number(r.ttime) || 0);
    }
    for (const r of rows.filter((x) => x.svname === 'BACKEND')) {
      const app = appOfBackend(r.pxname ?? '');
      if (app === undefined) continue;
      const d = grown(`${r.pxname}/BACKEND`, countsOf(r));
      d.forEach((n, i) => (servedByBackends[i]! += n));
      // What the backend answered itself: its growth beyond its servers' (client aborts are the servers').
      const own = d.map((n, i) => (i === 5 ? 0 : Math.max(0, n - (servedByServers.get(r.pxname!)?.[i] ?? 0))));
      if (own.some((n) => n > 0) && !logged.has(app)) record(app, undefined, own, 0);
    }
    const fe = rows.find((x) => x.pxname === this.frontend && x.svname === 'FRONTEND');
    if (fe !== undefined) {
      const d = grown(`${this.frontend}/FRONTEND`, countsOf(fe));
      const own = d.map((n, i) => (i === 5 ? 0 : Math.max(0, n - servedByBackends[i]!)));
      if (own.some((n) => n > 0)) record('', undefined, own, 0);
    }
    this.#last = next;
    return counted;
  }
}
