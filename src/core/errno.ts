/** The `code` of a Node system error (ENOENT, EEXIST, …), or undefined for anything else. */
export function errno(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}
