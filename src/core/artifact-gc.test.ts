import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { planArtifactGc, type GcApp, type GcBlob, type GcInput } from './artifact-gc.js';

const d = (n: number): string => `sha256:${n.toString(16).padStart(64, '0')}`;
const HOUR = 3_600_000;
const NOW = 100 * HOUR;

function input(over: Partial<GcInput>): GcInput {
  return {
    blobs: [],
    apps: [],
    rollouts: [],
    runArtifacts: [],
    nodeRuntimes: [],
    now: NOW,
    settings: { keep: 10, graceMs: HOUR },
    ...over,
  };
}

describe('artifact GC plan', () => {
  it('keeps the active revision, the newest `keep` and young blobs; deletes the rest', () => {
    const blobs: GcBlob[] = [1, 2, 3, 4, 5].map((n) => ({ digest: d(n), size: n * 100, createdAt: NOW - 10 * HOUR, app: 'web' }));
    blobs.push({ digest: d(6), size: 1, createdAt: NOW - 60_000 });
    const apps: GcApp[] = [{ name: 'web', activeRevision: 2, revisions: [1, 2, 3, 4].map((n) => ({ number: n, artifact: d(n) })) }];
    const p = planArtifactGc(input({ blobs, apps, settings: { keep: 1, graceMs: HOUR } }));
    assert.deepEqual(
      p.delete.map((b) => b.digest),
      [d(5), d(3), d(1)],
      'largest first',
    );
    assert.equal(p.freedBytes, 900);
    assert.equal(p.kept.get(d(2)), 'active');
    assert.equal(p.kept.get(d(4)), 'recent');
    assert.equal(p.kept.get(d(6)), 'young');
  });

  it("keeps what a running rollout, a queued run or a fresh runtime record uses, and a kept revision's runtime and image archive", () => {
    const old = NOW - 5 * HOUR;
    const blobs: GcBlob[] = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => ({ digest: d(n), size: 10, createdAt: old }));
    const apps: GcApp[] = [
      {
        name: 'web',
        activeRevision: 3,
        revisions: [
          { number: 1, artifact: d(1) },
          { number: 2, artifact: d(2) },
          { number: 3, artifact: d(3), nodeRuntime: d(4) },
          { number: 4, artifact: d(9), imageArchive: d(5) },
        ],
      },
    ];
    const p = planArtifactGc(
      input({
        blobs,
        apps,
        settings: { keep: 0, graceMs: HOUR },
        rollouts: [{ app: 'web', fromRevision: 3, toRevision: 4 }],
        runArtifacts: [d(6)],
        nodeRuntimes: [
          { digest: d(7), createdAt: NOW - 1000 },
          { digest: d(8), createdAt: old },
        ],
      }),
    );
    assert.deepEqual(p.delete.map((b) => b.digest).sort(), [d(1), d(2), d(8)]);
    assert.equal(p.kept.get(d(4)), 'active');
    assert.equal(p.kept.get(d(5)), 'rollout');
    assert.equal(p.kept.get(d(6)), 'run');
    assert.equal(p.kept.get(d(7)), 'runtime');
    assert.equal(p.kept.has(d(9)), false, 'only stored blobs are counted as kept');
  });

  it('never deletes what is used or young, and deletes everything else (property)', () => {
    const arb = fc.record({
      blobs: fc.uniqueArray(
        fc.record({
          n: fc.integer({ min: 1, max: 40 }),
          size: fc.integer({ min: 0, max: 1e9 }),
          age: fc.integer({ min: 0, max: 10 * HOUR }),
        }),
        { selector: (b) => b.n, maxLength: 30 },
      ),
      apps: fc.array(
        fc.record({
          revs: fc.array(
            fc.record({
              a: fc.integer({ min: 1, max: 40 }),
              rt: fc.option(fc.integer({ min: 1, max: 40 }), { nil: undefined }),
              arch: fc.option(fc.integer({ min: 1, max: 40 }), { nil: undefined }),
            }),
            { maxLength: 12 },
          ),
          active: fc.option(fc.nat(), { nil: undefined }),
          rollout: fc.option(fc.tuple(fc.option(fc.nat(), { nil: undefined }), fc.nat()), { nil: undefined }),
        }),
        { maxLength: 4 },
      ),
      runs: fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 3 }),
      runtimes: fc.array(fc.record({ n: fc.integer({ min: 1, max: 40 }), age: fc.integer({ min: 0, max: 10 * HOUR }) }), { maxLength: 4 }),
      keep: fc.integer({ min: 0, max: 5 }),
      grace: fc.integer({ min: 0, max: 5 * HOUR }),
    });
    fc.assert(
      fc.property(arb, (s) => {
        const apps: GcApp[] = s.apps.map((a, i) => ({
          name: `app${i}`,
          activeRevision: a.active === undefined || a.revs.length === 0 ? undefined : (a.active % a.revs.length) + 1,
          revisions: a.revs.map((r, j) => ({
            number: j + 1,
            artifact: d(r.a),
            nodeRuntime: r.rt === undefined ? undefined : d(r.rt),
            imageArchive: r.arch === undefined ? undefined : d(r.arch),
          })),
        }));
        const rollouts = s.apps.flatMap((a, i) =>
          a.rollout && a.revs.length > 0
            ? [
                {
                  app: `app${i}`,
                  fromRevision: a.rollout[0] === undefined ? undefined : (a.rollout[0] % a.revs.length) + 1,
                  toRevision: (a.rollout[1] % a.revs.length) + 1,
                },
              ]
            : [],
        );
        const blobs = s.blobs.map((b) => ({ digest: d(b.n), size: b.size, createdAt: NOW - b.age }));
        const nodeRuntimes = s.runtimes.map((r) => ({ digest: d(r.n), createdAt: NOW - r.age }));
        const settings = { keep: s.keep, graceMs: s.grace };
        const p = planArtifactGc({ blobs, apps, rollouts, runArtifacts: s.runs.map(d), nodeRuntimes, now: NOW, settings });

        const used = new Set<string>();
        const useRev = (a: GcApp, n: number | undefined): void => {
          const r = a.revisions.find((x) => x.number === n);
          if (r) [r.artifact, r.nodeRuntime, r.imageArchive].forEach((x) => x && used.add(x));
        };
        for (const a of apps) {
          useRev(a, a.activeRevision);
          for (const r of a.revisions.filter((x) => x.number > a.revisions.length - s.keep)) useRev(a, r.number);
        }
        for (const r of rollouts) {
          const a = apps.find((x) => x.name === r.app)!;
          useRev(a, r.toRevision);
          useRev(a, r.fromRevision);
        }
        s.runs.forEach((n) => used.add(d(n)));
        nodeRuntimes.filter((r) => NOW - r.createdAt < s.grace).forEach((r) => used.add(r.digest));
        const deleted = new Set(p.delete.map((b) => b.digest));
        for (const b of blobs) {
          const mustKeep = used.has(b.digest) || NOW - b.createdAt < s.grace;
          assert.equal(deleted.has(b.digest), !mustKeep, `${b.digest} used=${used.has(b.digest)} age=${NOW - b.createdAt}`);
        }
        assert.equal(
          p.freedBytes,
          p.delete.reduce((t, b) => t + b.size, 0),
        );
        assert.equal(p.kept.size + p.delete.length, blobs.length);
      }),
      { numRuns: 500 },
    );
  });
});
