/**
 * What Pilot uses of undici (`request`, `Agent`, `Pool`, the `Dispatcher` type), loaded from undici's
 * own files instead of its index. The index also loads fetch, WebSocket, EventSource, the caches, the
 * mocks and every interceptor: about 9 MB of RSS over these files alone, in every process (the
 * agent, `pilot up`, the router). undici has no "exports" map, so these deep paths resolve; they
 * depend on undici's file layout, which is why package.json pins its exact version (7.30.2).
 *
 * `request` behaves as undici's top-level `request` (its index.js `makeDispatcher`): the same
 * url/opts handling, method default (PUT with a body, else GET) and global dispatcher (the one
 * undici's lib/global.js installs on globalThis, shared with any other copy of undici loaded later).
 */
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const require = createRequire(import.meta.url);

const DispatcherClass = require('undici/lib/dispatcher/dispatcher.js') as typeof Undici.Dispatcher;
const api = require('undici/lib/api/index.js') as Record<string, unknown>;
const { InvalidArgumentError } = require('undici/lib/core/errors.js') as typeof Undici.errors;
const util = require('undici/lib/core/util.js') as { parseURL(url: unknown): URL; parseOrigin(url: unknown): URL };
const { getGlobalDispatcher } = require('undici/lib/global.js') as { getGlobalDispatcher(): Undici.Dispatcher };

// undici's index gives every dispatcher its request/stream/pipeline/upgrade/connect methods this way.
Object.assign(DispatcherClass.prototype, api);

/** undici's Agent (one pool per origin). */
export const Agent = require('undici/lib/dispatcher/agent.js') as typeof Undici.Agent;
/** undici's Pool (keep-alive connections to one origin). */
export const Pool = require('undici/lib/dispatcher/pool.js') as typeof Undici.Pool;
export type Agent = Undici.Agent;
export type Pool = Undici.Pool;
/** undici's Dispatcher type, with its namespace (ResponseData, DispatchHandler, …). */
export type { Dispatcher } from 'undici';

type RequestOpts = { dispatcher?: Undici.Dispatcher; agent?: unknown; path?: string; method?: string; body?: unknown } & Record<
  string,
  unknown
>;
const dispatcherRequest = api.request as (
  this: Undici.Dispatcher,
  opts: Record<string, unknown>,
) => Promise<Undici.Dispatcher.ResponseData>;

/** undici's top-level `request(url, opts)`: the same checks, defaults and global dispatcher. */
function requestImpl(url: unknown, opts?: RequestOpts | null): Promise<Undici.Dispatcher.ResponseData> {
  if (!url || (typeof url !== 'string' && typeof url !== 'object' && !(url instanceof URL))) {
    throw new InvalidArgumentError('invalid url');
  }
  if (opts != null && typeof opts !== 'object') throw new InvalidArgumentError('invalid opts');
  let target: URL;
  if (opts && opts.path != null) {
    if (typeof opts.path !== 'string') throw new InvalidArgumentError('invalid opts.path');
    const path = opts.path.startsWith('/') ? opts.path : `/${opts.path}`;
    target = new URL(util.parseOrigin(url).origin + path);
  } else {
    if (!opts) opts = (typeof url === 'object' ? url : {}) as RequestOpts;
    target = util.parseURL(url);
  }
  const { agent, dispatcher = getGlobalDispatcher() } = opts;
  if (agent) throw new InvalidArgumentError('unsupported opts.agent. Did you mean opts.client?');
  return dispatcherRequest.call(dispatcher, {
    ...opts,
    origin: target.origin,
    path: target.search ? `${target.pathname}${target.search}` : target.pathname,
    method: opts.method || (opts.body ? 'PUT' : 'GET'),
  });
}

/** undici's top-level `request`, with its types. */
export const request = requestImpl as unknown as typeof Undici.request;
