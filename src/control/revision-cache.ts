/** Revisions by app and number, read once: a revision never changes after it is made. */
import type { RevisionRecord, Store } from '../store/store.js';

export class RevisionCache {
  private readonly revisions = new Map<string, RevisionRecord>();

  constructor(private readonly store: Pick<Store, 'getRevision'>) {}

  async get(app: string, n: number): Promise<RevisionRecord | undefined> {
    const key = `${app}/${n}`;
    const cached = this.revisions.get(key);
    if (cached) return cached;
    const r = await this.store.getRevision(app, n);
    if (r) this.revisions.set(key, r); // a miss is not cached: the revision may be about to be made
    return r;
  }

  /** Drop an app's revisions (its rows were purged; a new app of that name starts at 1 again). */
  forgetApp(app: string): void {
    for (const key of this.revisions.keys()) if (key.startsWith(`${app}/`)) this.revisions.delete(key);
  }
}
