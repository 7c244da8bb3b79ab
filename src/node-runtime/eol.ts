/**
 * Which Node.js majors are past end-of-life, from the Node.js release schedule
 * (https://github.com/nodejs/Release: odd majors live about 8 months, even ones 30 months after
 * they become LTS). Pure: `now` is passed in. An EOL runtime still deploys; the run log warns.
 */

/** Last day of support (UTC) per major line. 0.x lines are keyed by their minor (0.10 → '0.10'). */
const EOL: Readonly<Record<string, string>> = {
  '0.8': '2014-07-31',
  '0.10': '2016-10-31',
  '0.11': '2015-09-08',
  '0.12': '2016-12-31',
  4: '2018-04-30',
  5: '2016-06-30',
  6: '2019-04-30',
  7: '2017-06-30',
  8: '2019-12-31',
  9: '2018-06-30',
  10: '2021-04-30',
  11: '2019-06-01',
  12: '2022-04-30',
  13: '2020-06-01',
  14: '2023-04-30',
  15: '2021-06-01',
  16: '2023-09-11',
  17: '2022-06-01',
  18: '2025-04-30',
  19: '2023-06-01',
  20: '2026-04-30',
  21: '2024-06-01',
  22: '2027-04-30',
  23: '2025-06-01',
  24: '2028-04-30',
  25: '2026-06-01',
  26: '2029-04-30',
  27: '2027-06-01',
};

export interface EolStatus {
  readonly line: string;
  /** YYYY-MM-DD, the last day of support. */
  readonly date: string;
}

/** The release line of a version and its end-of-life date when `now` is past it; undefined while supported (or unknown). */
export function endOfLife(version: string, now: number): EolStatus | undefined {
  const m = /^v?(\d+)\.(\d+)\./.exec(version);
  if (!m) return undefined;
  const line = m[1] === '0' ? `0.${m[2]}` : m[1]!;
  const date = EOL[line];
  if (date === undefined) return undefined;
  return now > Date.parse(`${date}T23:59:59Z`) ? { line, date } : undefined;
}

/** The run log's warning for an EOL runtime, or undefined. */
export function eolWarning(version: string, now: number): string | undefined {
  const eol = endOfLife(version, now);
  if (!eol) return undefined;
  const supported = Object.entries(EOL)
    .filter(([line, d]) => !line.startsWith('0.') && now <= Date.parse(`${d}T23:59:59Z`))
    .map(([line]) => line);
  return `warning: Node.js ${eol.line} reached its end of life on ${eol.date} (no security fixes since): ${version} deploys, but plan an upgrade${supported.length > 0 ? ` to a supported major (${supported.join(', ')})` : ''}`;
}
