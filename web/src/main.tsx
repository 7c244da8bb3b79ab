/** The dashboard: sign-in, then the shell (navigation, the event feed's state) and one page per path. */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, onSignedOut, resume, signIn, signOut } from './api.js';
import { feed } from './events.js';
import { useFeed } from './hooks.js';
import { onLinkClick, usePath } from './router.js';
import { ErrorBox, Loading } from './parts/error-box.js';
import { AppsPage } from './pages/apps.js';
import { AppPage } from './pages/app.js';
import { RunsPage, RunPage } from './pages/runs.js';
import { NodesPage } from './pages/nodes.js';
import { EventsPage } from './pages/events.js';
import './style.css';

function SignIn({ onIn, reason }: { onIn: () => void; reason: string | undefined }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  return (
    <main class="signin">
      <h1>Pilot</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          setBusy(true);
          setError(undefined);
          signIn(token)
            .then(() => {
              setToken('');
              onIn();
            })
            .catch((err: unknown) => setError(err instanceof ApiError ? err : new ApiError(0, 'client', String(err), undefined)))
            .finally(() => setBusy(false));
        }}
      >
        {reason ? (
          <p class="notice" role="status">
            {reason}
          </p>
        ) : null}
        <label for="token">Admin token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="off"
          spellcheck={false}
          required
          value={token}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
          autofocus
        />
        <p class="muted small">
          The token in <code>$PILOT_HOME/admin-token</code> (printed by <code>pilot up</code> on its first start). It is sent once and
          exchanged for a session cookie; the page never stores it.
        </p>
        <button type="submit" class="primary" disabled={busy || token.trim() === ''}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        <ErrorBox error={error} title="Sign-in refused" />
      </form>
    </main>
  );
}

function FeedState() {
  const f = useFeed();
  const label = f.status === 'live' ? 'live' : f.status === 'reconnecting' ? 'reconnecting…' : f.status;
  return (
    <span
      class={`feed feed-${f.status}`}
      data-testid="feed"
      data-status={f.status}
      data-reconnects={f.reconnects}
      role="status"
      title="The event stream"
    >
      <span class="dot" aria-hidden="true" /> {label}
      {feed.error && f.status !== 'live' ? <span class="muted"> ({feed.error.message})</span> : null}
    </span>
  );
}

function Page({ path }: { path: string }) {
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0 || (parts[0] === 'apps' && parts.length === 1)) return <AppsPage />;
  if (parts[0] === 'apps' && parts.length === 2) return <AppPage name={parts[1]!} />;
  if (parts[0] === 'runs' && parts.length === 1) return <RunsPage />;
  if (parts[0] === 'runs' && parts.length === 2) return <RunPage id={parts[1]!} />;
  if (parts[0] === 'nodes') return <NodesPage />;
  if (parts[0] === 'events') return <EventsPage />;
  return (
    <section>
      <h1>Not found</h1>
      <p>
        Nothing at <code>{path}</code>. <a href="/apps">Apps</a>
      </p>
    </section>
  );
}

function Shell({ onOut }: { onOut: () => void }) {
  const path = usePath();
  const here = (p: string): 'page' | undefined =>
    path === p || path.startsWith(p + '/') || (p === '/apps' && path === '/') ? 'page' : undefined;
  useEffect(() => {
    feed.start();
    return () => feed.close();
  }, []);
  return (
    <div class="shell" onClick={onLinkClick}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header>
        <a class="brand" href="/apps">
          Pilot
        </a>
        <nav aria-label="Main">
          <a href="/apps" aria-current={here('/apps')}>
            Apps
          </a>
          <a href="/runs" aria-current={here('/runs')}>
            Runs
          </a>
          <a href="/nodes" aria-current={here('/nodes')}>
            Nodes
          </a>
          <a href="/events" aria-current={here('/events')}>
            Events
          </a>
        </nav>
        <FeedState />
        <button type="button" class="link" onClick={() => void signOut().finally(onOut)}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        <Page path={path} />
      </main>
    </div>
  );
}

function Root() {
  const [state, setState] = useState<'checking' | 'in' | 'out'>('checking');
  const [reason, setReason] = useState<string | undefined>(undefined);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  useEffect(
    () =>
      onSignedOut(() => {
        setReason('Your session has ended (signed out, expired, or the server restarted). Sign in again.');
        setState('out');
      }),
    [],
  );
  useEffect(() => {
    resume()
      .then((ok) => setState(ok ? 'in' : 'out'))
      .catch((err: unknown) => {
        setError(err instanceof ApiError ? err : new ApiError(0, 'client', String(err), undefined));
        setState('out');
      });
  }, []);
  if (state === 'checking') return <Loading what="Pilot" />;
  if (state === 'out')
    return (
      <>
        <ErrorBox error={error} title="The server did not answer" />
        <SignIn
          reason={reason}
          onIn={() => {
            setReason(undefined);
            setError(undefined);
            setState('in');
          }}
        />
      </>
    );
  return (
    <Shell
      onOut={() => {
        setReason('Signed out.');
        setState('out');
      }}
    />
  );
}

render(<Root />, document.getElementById('app')!);
