/** One app's instances per node, and its live logs. */
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, followText } from '../api.js';
import { feed } from '../events.js';
import { ErrorBox } from '../parts/error-box.js';
import { clock } from '../format.js';
import type { AppDetail } from '../types.js';

export function Instances({ d }: { d: AppDetail }) {
  const nodes = [...new Set(d.instances.map((i) => i.node))].sort();
  if (nodes.length === 0) return <p class="muted">No instances.</p>;
  return (
    <div class="nodes-grid" data-testid="instances">
      {nodes.map((n) => (
        <div class="card" key={n}>
          <h3>
            <a href="/nodes">{n}</a>
          </h3>
          <ul class="plain">
            {d.instances
              .filter((i) => i.node === n)
              .map((i) => (
                <li key={i.id} data-instance={i.id}>
                  <span class={`badge state-${i.state}`}>{i.state}</span> <code>{i.id}</code> rev {i.revision}
                  {i.port ? <span class="muted small"> :{i.port}</span> : null}
                  {i.restarts > 0 ? <span class="warn small"> {i.restarts} restart(s)</span> : null}
                  <span class="muted small"> {i.startedAt ? `up since ${clock(i.startedAt)}` : ''}</span>
                </li>
              ))}
          </ul>
        </div>
      ))}
    </div>
  );
}

/** The app's live output: a followed stream, re-opened when a new revision goes live. */
export function Logs({ name }: { name: string }) {
  const [lines, setLines] = useState<string[]>([]);
  const [state, setState] = useState<'following' | 'ended' | 'error'>('following');
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const [generation, setGeneration] = useState(0);
  const pre = useRef<HTMLPreElement>(null);
  useEffect(
    () =>
      feed.subscribe((e) => {
        if (
          e !== 'reset' &&
          e.app === name &&
          (e.kind === 'deploy.activated' || (e.kind === 'instance.state' && e.payload.state === 'ready'))
        )
          setGeneration((g) => g + 1);
      }),
    [name],
  );
  useEffect(() => {
    const abort = new AbortController();
    let buf: string[] = [];
    let flush: ReturnType<typeof setTimeout> | undefined;
    setState('following');
    setError(undefined);
    setLines([]);
    followText(
      `/api/v1/apps/${encodeURIComponent(name)}/logs?follow=1&tail=200`,
      (l) => {
        buf.push(l);
        flush ??= setTimeout(() => {
          flush = undefined;
          const add = buf;
          buf = [];
          setLines((old) => [...old, ...add].slice(-1000));
        }, 100);
      },
      abort.signal,
    )
      .then(() => !abort.signal.aborted && setState('ended'))
      .catch((err: unknown) => {
        if (abort.signal.aborted) return;
        setState('error');
        setError(
          err instanceof ApiError
            ? err
            : new ApiError(0, 'stream', 'the log stream broke', 'It re-opens when a revision goes live, or with "Follow again".'),
        );
      });
    return () => {
      abort.abort();
      clearTimeout(flush);
    };
  }, [name, generation]);
  useEffect(() => {
    const el = pre.current;
    if (el && el.scrollHeight - el.scrollTop - el.clientHeight < 80) el.scrollTop = el.scrollHeight;
  }, [lines]);
  return (
    <div>
      <p class="small">
        {state === 'following' ? <span class="badge ok">following</span> : <span class="badge">{state}</span>}{' '}
        {state !== 'following' ? (
          <button type="button" onClick={() => setGeneration((g) => g + 1)}>
            Follow again
          </button>
        ) : null}
      </p>
      <ErrorBox error={error} title="Logs" />
      <pre class="log" ref={pre} tabIndex={0} aria-label={`Logs of ${name}`} data-testid="logs">
        {lines.join('\n')}
      </pre>
    </div>
  );
}
