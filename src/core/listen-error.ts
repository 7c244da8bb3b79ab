import { fail, type PilotError } from './errors.js';

/** A failed listen, said plainly: which part, which address, and what to do. */
export function listenError(err: unknown, what: string, host: string, port: number): PilotError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return fail.listenPortInUse({ what, host, port });
  if (code === 'EACCES') return fail.listenPermissionDenied({ what, host, port });
  if (code === 'EADDRNOTAVAIL') return fail.listenAddressNotLocal({ what, host });
  return fail.listenFailed({ what, host, port, message: (err as Error).message }, { cause: err });
}
