/**
 * The blob store port: what the artifact routes, the GC, the scrub, deploys and the runtime index
 * use of a content-addressed store of immutable blobs. Two adapters: `FsBlobStore` (blob-store.ts,
 * the embedded default: files under $PILOT_HOME/artifacts) and `OciBlobStore` (oci-blob-store.ts:
 * OCI artifacts in a distribution registry, shared by every control-plane replica). One contract
 * suite (blob-contract.fixture.ts) runs against both.
 */
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';

export interface PutOptions {
  /** Refuse (digest_mismatch) unless the bytes hash to this digest. */
  readonly expectedDigest?: string;
  /** Refuse (too_large) as soon as more bytes than this arrive. */
  readonly maxBytes?: number;
  /** A file name for the blob where the store keeps one (the OCI layer's title annotation). */
  readonly name?: string;
}

export interface PutResult {
  readonly digest: string;
  readonly size: number;
  /** false when the blob was already stored: the new bytes were verified, then discarded. */
  readonly created: boolean;
  /** The stored copy was corrupt: it went to quarantine (this path) and the new bytes replaced it. */
  readonly healed?: string;
}

/** What `verifyOrQuarantine` found. */
export type BlobCheck =
  | { readonly state: 'ok'; readonly size: number }
  | { readonly state: 'missing' }
  | { readonly state: 'quarantined'; readonly actual: string; readonly size: number; readonly to: string };

/** One stored blob, as `list()` gives it. */
export interface StoredBlob {
  readonly digest: string;
  readonly size: number;
  /** When it was last written or touched (wall-clock ms). */
  readonly mtimeMs: number;
}

/**
 * A blob opened for reading: its size fixed at open (a GC delete in between cannot make size and
 * bytes disagree on the filesystem). `fh` is there when the bytes are a local file (the routes send
 * it with two reused buffers); otherwise `read` streams them. The caller calls `close()`.
 */
export interface OpenedBlob {
  readonly size: number;
  readonly fh?: FileHandle;
  /** The bytes start..end (inclusive); a whole-blob read is checked against the digest. */
  read(start: number, end: number): Promise<Readable>;
  close(): Promise<void>;
}

export interface BlobStore {
  /** Which adapter: files on this machine, or a registry every replica shares. */
  readonly kind: 'fs' | 'oci';
  /** Where the blobs are, for messages and `pilot status`: a folder, or oci://host/repo. */
  readonly location: string;
  /**
   * Stream `src` into the store, hashing as it goes. `src` is not destroyed when put stops early
   * (too_large): the caller owns it. Nothing is visible under a digest before all its bytes are
   * stored and checked.
   */
  put(src: Readable, opts?: PutOptions): Promise<PutResult>;
  has(digest: string): Promise<boolean>;
  /** The blob's size, or undefined when it is not stored. */
  stat(digest: string): Promise<{ size: number } | undefined>;
  /** A stream of the whole blob (from a registry: checked against its digest); artifact_not_found when it is not stored. */
  openRead(digest: string): Promise<Readable>;
  /** The blob opened for (range) reads; artifact_not_found when it is not stored. */
  openBlob(digest: string): Promise<OpenedBlob>;
  /** Remove a blob; false when it was not stored. Only the control plane's GC calls it. */
  delete(digest: string): Promise<boolean>;
  /** The blob was published again: its GC grace period starts over. False when it is not stored. */
  touch(digest: string): Promise<boolean>;
  /** When the blob was last written or touched (wall-clock ms), or undefined when it is not stored. */
  modifiedAt(digest: string): Promise<number | undefined>;
  list(): Promise<StoredBlob[]>;
  /** Re-read the blob: true when it is stored and its bytes still hash to its digest. */
  verify(digest: string): Promise<boolean>;
  /** Re-read the blob; a copy whose bytes no longer match is taken out of the store (its name is free again). */
  verifyOrQuarantine(digest: string): Promise<BlobCheck>;
  /** Check the store can be used (the registry answers, the credentials work; the folders exist). */
  ping(): Promise<void>;
  /** Release what the store holds (connections); a no-op for the filesystem. */
  close(): Promise<void>;
}
