/**
 * An action behind a confirmation: a button (disabled with the reason when the API would refuse)
 * opening a modal <dialog> (keyboard: focus moves in, Escape cancels, Enter confirms); the result
 * or the API's error (message and hint) is shown beside it.
 */
import { useRef, useState } from 'preact/hooks';
import type { ComponentChildren } from 'preact';
import { ApiError } from '../api.js';
import { ErrorBox } from './error-box.js';

export function Action(props: {
  label: string;
  /** Why the API would refuse it now; undefined when it is allowed. */
  disabled?: string | undefined;
  question: string;
  children?: ComponentChildren;
  danger?: boolean;
  run: () => Promise<string | void>;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const [done, setDone] = useState<string | undefined>(undefined);
  const id = 'why-' + props.label.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  const confirm = async (): Promise<void> => {
    setBusy(true);
    setError(undefined);
    setDone(undefined);
    try {
      const said = await props.run();
      setDone(said || `${props.label}: done`);
      dialog.current?.close();
    } catch (err) {
      setError(err instanceof ApiError ? err : new ApiError(0, 'client', String(err), undefined));
      dialog.current?.close();
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="action">
      <button
        type="button"
        class={props.danger ? 'danger' : ''}
        disabled={props.disabled !== undefined || busy}
        aria-describedby={props.disabled ? id : undefined}
        title={props.disabled}
        onClick={() => dialog.current?.showModal()}
      >
        {props.label}
      </button>
      {props.disabled ? (
        <span class="why muted" id={id}>
          {props.disabled}
        </span>
      ) : null}
      {done ? (
        <span class="done" role="status">
          {done}
        </span>
      ) : null}
      <ErrorBox error={error} title={`${props.label} refused`} />
      <dialog ref={dialog} aria-label={props.label}>
        <form
          method="dialog"
          onSubmit={(e) => {
            e.preventDefault();
            void confirm();
          }}
        >
          <p>{props.question}</p>
          {props.children}
          <div class="buttons">
            <button type="button" onClick={() => dialog.current?.close()}>
              Cancel
            </button>
            <button type="submit" class={props.danger ? 'danger' : 'primary'} disabled={busy} autofocus>
              {busy ? 'Working…' : `Yes, ${props.label.toLowerCase()}`}
            </button>
          </div>
        </form>
      </dialog>
    </div>
  );
}
