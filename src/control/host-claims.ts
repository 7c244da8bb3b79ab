/**
 * Who owns which Host. `<app>.localhost` belongs to that app; an extra host (pilot.yaml `hosts:`)
 * belongs to the first app that claimed it, as long as that app exists. A deploy that claims
 * another app's host is refused (409 host_taken, naming the owner) before anything is stored, so
 * one app can never take routing away from another. Called inside the single writer.
 */
import { fail } from '../core/errors.js';
import { isValidName } from '../core/names.js';
import { normalizeHost } from '../router/routing-table.js';
import type { Store } from '../store/store.js';
import type { Reconciler } from './reconciler.js';

/** Hosts each app claims: its own `<name>.localhost`, its latest config's and its active revision's extra hosts. */
async function claims(store: Store, reconciler: Reconciler, except: string): Promise<Map<string, string>> {
  const owner = new Map<string, string>();
  const apps = (await store.listApps()).sort((a, b) => a.createdAt - b.createdAt || a.name.localeCompare(b.name));
  for (const a of apps) {
    if (a.name === except) continue;
    const active = a.activeRevision === undefined ? undefined : await reconciler.revision(a.name, a.activeRevision);
    for (const h of [`${a.name}.localhost`, ...a.config.hosts, ...(active?.config.hosts ?? [])]) {
      const host = normalizeHost(h);
      if (!owner.has(host)) owner.set(host, a.name);
    }
  }
  return owner;
}

/** Throw host_taken when `hosts` (of app `name`) holds a host of another app. */
export async function assertHostsFree(store: Store, reconciler: Reconciler, name: string, hosts: readonly string[]): Promise<void> {
  const owner = await claims(store, reconciler, name);
  for (const raw of hosts) {
    const host = normalizeHost(raw);
    const taken = owner.get(host);
    if (taken !== undefined) {
      throw fail.hostTaken({ host, taken, name }, { details: { host, owner: taken } });
    }
    const reserved = /^(.+)\.localhost$/.exec(host)?.[1];
    if (reserved !== undefined && reserved !== name && isValidName(reserved)) {
      throw fail.hostReserved({ host, reserved, name }, { details: { host, owner: reserved } });
    }
  }
}
