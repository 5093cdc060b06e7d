import type { Readable } from 'node:stream';
import { BackupError } from '../errors.ts';

/**
 * # ObjectStore: where backups go
 *
 * A backend does one thing per method against one kind of storage and maps its errors; behaviour
 * that every backend would repeat is a decorator around the same interface. Today:
 * - `s3.ts` — the S3 backend (AWS or an S3-compatible server): one request (or one file-upload.ts
 *   multipart upload) per call, errors mapped in `s3-errors.ts`;
 * - `verified-store.ts` — reads every written object back and deletes what does not match;
 * - `createS3ObjectStore` (s3.ts) composes the two: that is what the tool uses.
 * Every implementation, decorated or not, passes the suite in test/storage/contract.ts.
 *
 * ## What every implementation guarantees
 * - **Keys** are '/'-separated and never contain ':'; any other key is refused with S3_BAD_KEY
 *   (permanent) before a request is sent.
 * - **putFile(key, path, options)** stores the bytes of a local file under `key` (multipart when
 *   large) and resolves only once the whole object is stored, with the size and sha256 of the
 *   bytes it read and sent. `onProgress(sent, total)` is called with growing `sent`, last with
 *   `sent === total`. `expectedSha256`, when given, is recorded with the object as its sha256
 *   (what `head` returns); the backend does not compare it — a decorator does.
 *   A missing or unreadable file rejects LOCAL_FILE_UNREADABLE before anything is sent. A
 *   failed upload leaves no incomplete multipart upload behind, and an upload whose signal fires
 *   before the object is complete rejects ABORTED and leaves no object. Idempotent: calling it
 *   again for the same key overwrites; the last complete call wins.
 * - **putBytes(key, bytes, options)** is the same for a small object (the manifest) in one
 *   request; it always records the sha256 of the bytes.
 * - **get(key)** streams an object (an error mid-stream reaches the reader as a coded error);
 *   **getBytes(key)** reads a small one whole. Both reject OBJECT_NOT_FOUND when there is no such
 *   object. **head(key)** resolves `null` for a missing object — "not found" is not an error there.
 * - **list(prefix)** yields every object whose key starts with `prefix`, in key order, each once;
 *   nothing for an empty prefix. It pages internally.
 * - **deleteMany(keys)** deletes them; missing keys, repeated keys and `[]` are fine (idempotent).
 * - **abortIncompleteUploads(prefix, startedBefore)** aborts multipart uploads under `prefix`
 *   initiated no later than `startedBefore` (by the server's clock) and resolves how many it aborted: 0
 *   where the server cannot list them; an upload without an initiation time is left alone. An upload that vanishes meanwhile (another process aborted or completed
 *   it) is not an error. Idempotent.
 * - **close()** releases connections; no call may follow.
 * - Failures reject with a BackupError with a stable code: S3_AUTH, S3_NO_SUCH_BUCKET, S3_BAD_KEY
 *   and OBJECT_NOT_FOUND are permanent; S3_UNREACHABLE and S3_ERROR may pass on a retry;
 *   ABORTED when the caller's signal fired.
 *
 * ## What a verified store adds (verified-store.ts)
 * After each put it checks the stored object (size, and sha256 by download or by the recorded
 * metadata) and the local file (unchanged since `expectedSha256` was taken), and deletes an object
 * that fails: S3_VERIFY_FAILED or LOCAL_FILE_CHANGED, with no object left. A signal that fires at
 * any moment before a put settles leaves no object, even one that was complete.
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
  /** The sha256 recorded when the object was written, where known (`head` only; `list` does not return it). */
  readonly sha256?: string;
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
  abortIncompleteUploads(prefix: string, startedBefore: Date): Promise<number>;
  close(): void;
}

/** LOCAL_FILE_UNREADABLE, as every implementation words it. */
export function localFileUnreadable(path: string, key: string, cause: unknown): BackupError {
  const why = (cause as NodeJS.ErrnoException).code ?? (cause as Error).message;
  return new BackupError('LOCAL_FILE_UNREADABLE', `cannot upload ${path} to ${key}: ${why}; the spooled file is gone or unreadable`, {
    cause,
    details: { path, key },
  });
}

/**
 * Forwards every call to the store it wraps. A decorator extends it and overrides only what it
 * changes (verification, recording in tests, …).
 */
export class ForwardingStore implements ObjectStore {
  protected readonly inner: ObjectStore;

  constructor(inner: ObjectStore) {
    this.inner = inner;
  }

  get description(): string {
    return this.inner.description;
  }

  get bucket(): string {
    return this.inner.bucket;
  }

  putFile(key: string, localPath: string, options?: PutOptions): Promise<PutResult> {
    return this.inner.putFile(key, localPath, options);
  }

  putBytes(key: string, body: Uint8Array, options?: PutOptions): Promise<PutResult> {
    return this.inner.putBytes(key, body, options);
  }

  get(key: string, options?: { signal?: AbortSignal }): Promise<Readable> {
    return this.inner.get(key, options);
  }

  getBytes(key: string): Promise<Buffer> {
    return this.inner.getBytes(key);
  }

  head(key: string): Promise<ObjectInfo | null> {
    return this.inner.head(key);
  }

  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix);
  }

  deleteMany(keys: readonly string[]): Promise<void> {
    return this.inner.deleteMany(keys);
  }

  abortIncompleteUploads(prefix: string, startedBefore: Date): Promise<number> {
    return this.inner.abortIncompleteUploads(prefix, startedBefore);
  }

  close(): void {
    this.inner.close();
  }

  toJSON(): Record<string, unknown> {
    return { description: this.description };
  }
}
