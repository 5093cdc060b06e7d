import type { Readable } from 'node:stream';

/**
 * Where backups go. S3 (AWS or compatible) implements it; every implementation passes the
 * contract suite in test/storage/contract.ts.
 *
 * Contract:
 * - Keys are '/'-separated, never contain ':'.
 * - `putFile` uploads a local file (multipart when large), then verifies the stored object
 *   (size, and sha256 per the store's verify mode) and returns the sha256 of the stored bytes.
 *   A failed or aborted upload leaves no object and no incomplete multipart upload behind.
 *   Safe to call again for the same key (idempotent overwrite).
 * - `putBytes` writes a small object (the manifest) in one request and verifies it the same way.
 * - `get` streams an object; `getBytes` reads a small one; both reject with code
 *   OBJECT_NOT_FOUND when it does not exist.
 * - `list` yields every object under a prefix, in key order.
 * - `deleteMany` is idempotent (missing keys are fine).
 * - `abortIncompleteUploads` aborts multipart uploads under a prefix older than `olderThanMs`
 *   and returns how many it aborted (0 where the server cannot list them).
 * - Failures reject with BackupError codes S3_…; auth/permission/no-such-bucket are permanent.
 */
export interface PutResult {
  readonly key: string;
  readonly bytes: number;
  readonly sha256: string;
}

export interface PutOptions {
  readonly contentType?: string;
  readonly signal?: AbortSignal;
  /** Bytes sent so far; called as parts complete. */
  readonly onProgress?: (sentBytes: number, totalBytes: number) => void;
  /** sha256 of the local file, when the caller already computed it while writing: saves a read. */
  readonly expectedSha256?: string;
}

export interface ObjectInfo {
  readonly key: string;
  readonly bytes: number;
  readonly lastModified: Date;
}

export interface ObjectStore {
  /** "s3://bucket/prefix", for messages. */
  readonly description: string;
  readonly bucket: string;
  putFile(key: string, localPath: string, options?: PutOptions): Promise<PutResult>;
  putBytes(key: string, body: Uint8Array, options?: PutOptions): Promise<PutResult>;
  get(key: string, options?: { signal?: AbortSignal }): Promise<Readable>;
  getBytes(key: string): Promise<Buffer>;
  head(key: string): Promise<ObjectInfo | null>;
  list(prefix: string): AsyncIterable<ObjectInfo>;
  deleteMany(keys: readonly string[]): Promise<void>;
  abortIncompleteUploads(prefix: string, olderThanMs: number): Promise<number>;
  close(): void;
}
