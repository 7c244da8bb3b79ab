/** The events timeline: the feed as it arrives (newest first), filtered by app or kind. */
import { useEffect, useState } from 'preact/hooks';
import { feed, type PilotEvent } from '../events.js';
import { clock, summary } from '../format.js';

export function EventsPage() {
  const [events, setEvents] = useState<PilotEvent[]>(() => [...feed.events]);
  const [app, setApp] = useState('');
  const [kind, setKind] = useState('');
  useEffect(() => feed.subscribe(() => setEvents([...feed.events])), []);
  const shown = events.filter((e) => (!app || e.app === app) && (!kind || e.kind.startsWith(kind))).reverse();
  const apps = [...new Set(events.map((e) => e.app).filter((a): a is string => a !== null))].sort();
  return (
    <section>
      <h1>Events</h1>
      <div class="filters">
        <label>
          App{' '}
          <select value={app} onChange={(e) => setApp((e.target as HTMLSelectElement).value)}>
            <option value="">all</option>
            {apps.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
        <label>
          Kind{' '}
          <select value={kind} onChange={(e) => setKind((e.target as HTMLSelectElement).value)}>
            <option value="">all</option>
            {['run.', 'rollout.', 'deploy.', 'instance.', 'node.', 'experiment.', 'autoscale.'].map((k) => (
              <option key={k} value={k}>
                {k.slice(0, -1)}
              </option>
            ))}
          </select>
        </label>
        <span class="muted small">
          {shown.length} of {events.length} held · last id {feed.lastId}
        </span>
      </div>
      {shown.length === 0 ? <p class="empty">No events yet.</p> : null}
      <ol class="timeline" data-testid="timeline" reversed>
        {shown.map((e) => (
          <li key={e.id} data-event-id={e.id}>
            <time dateTime={new Date(e.time).toISOString()}>{clock(e.time)}</time>
            <span class={`kind kind-${e.kind.split('.')[0]}`}>{e.kind}</span>
            {e.app ? <a href={`/apps/${encodeURIComponent(e.app)}`}>{e.app}</a> : <span class="muted">—</span>}
            <span class="what">{summary(e.kind, e.payload)}</span>
          </li>
        ))}
      </ol>
    </section>
  );
}
