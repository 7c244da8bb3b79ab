import type { ApiError } from '../api.js';

/** An API error as the user can act on it: its message and its hint, never a blank page. */
export function ErrorBox({ error, title }: { error: ApiError | undefined; title?: string }) {
  if (!error) return null;
  return (
    <div class="error" role="alert">
      <strong>{title ?? 'Error'}</strong>: {error.message}
      {error.code ? <code class="code">{error.code}</code> : null}
      {error.hint ? <p class="hint">{error.hint}</p> : null}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" aria-busy="true">
      Loading {what}…
    </p>
  );
}
