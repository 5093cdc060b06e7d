import { throwIfAborted } from '../abort.ts';
import { AbortedError, BackupError, combineErrors } from '../errors.ts';
import { sha256Of, sha256OfFile, sha256OfStream } from '../hashing.ts';
import { silentLogger, type Logger } from '../log.ts';
import { ForwardingStore, localFileUnreadable, type ObjectStore, type PutOptions, type PutResult } from './object-store.ts';

/**
 * How a written object is checked. "download" re-reads it and hashes it: the only check that
 * catches a server that stored different bytes. "head" compares the size and the sha256 recorded
 * with the object — but that record is what we sent, so it proves only that an object of the
 * right size from this upload is there, not that its bytes are right.
 */
export type VerifyMode = 'download' | 'head';

export interface VerifiedStoreOptions {
  readonly mode: VerifyMode;
  readonly logger?: Logger;
}

/**
 * An ObjectStore that does not report a put as done until the object is proven stored (invariant
 * 5: "each artifact is verified after upload"), and never leaves a bad or cancelled object behind:
 * - the local file is hashed before the upload (unless the caller passes `expectedSha256`) and the
 *   bytes actually sent must match it: LOCAL_FILE_CHANGED otherwise;
 * - the stored object must have the size and sha256 sent (see VerifyMode): S3_VERIFY_FAILED
 *   otherwise (retryable: the next attempt uploads again);
 * - a signal that fires before the put settles means ABORTED, even when the object was complete.
 * In each case the object is deleted before the error is thrown (a failed delete is joined to it).
 */
export class VerifiedStore extends ForwardingStore {
  readonly #mode: VerifyMode;
  readonly #logger: Logger;

  constructor(inner: ObjectStore, options: VerifiedStoreOptions) {
    super(inner);
    this.#mode = options.mode;
    this.#logger = (options.logger ?? silentLogger).child({ component: 'verified-store' });
  }

  override async putFile(key: string, localPath: string, options: PutOptions = {}): Promise<PutResult> {
    const { signal } = options;
    const what = `upload of ${key}`;
    throwIfAborted(signal, what);
    // Taken before the upload, so that the store can record it with the object.
    let expected = options.expectedSha256;
    if (expected === undefined) {
      try {
        expected = (await sha256OfFile(localPath, signal)).sha256;
      } catch (err) {
        throwIfAborted(signal, what);
        throw localFileUnreadable(localPath, key, err);
      }
    }
    const started = Date.now();
    const put = await this.inner.putFile(key, localPath, { ...options, expectedSha256: expected });
    if (signal?.aborted) await this.#discard(key, new AbortedError(what, signal.reason));
    if (put.sha256 !== expected) {
      await this.#discard(
        key,
        new BackupError(
          'LOCAL_FILE_CHANGED',
          `${localPath} changed while it was uploaded to ${key} (expected sha256 ${expected}; read ${put.bytes} bytes, sha256 ${put.sha256}); ` +
            (options.expectedSha256 === undefined ? 'something else is writing the spool file' : 'the spool file does not match the checksum taken when it was written'),
          { details: { key, path: localPath } },
        ),
      );
    }
    await this.#verify(key, put.bytes, expected, signal);
    this.#logger.debug({ key, bytes: put.bytes, ms: Date.now() - started }, 'upload verified');
    return put;
  }

  override async putBytes(key: string, body: Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    const { signal } = options;
    const what = `upload of ${key}`;
    throwIfAborted(signal, what);
    const sha256 = sha256Of(body);
    if (options.expectedSha256 !== undefined && options.expectedSha256 !== sha256) {
      throw new BackupError('LOCAL_FILE_CHANGED', `the bytes for ${key} do not match the expected sha256; nothing was uploaded`, { details: { key } });
    }
    const put = await this.inner.putBytes(key, body, options);
    if (signal?.aborted) await this.#discard(key, new AbortedError(what, signal.reason));
    await this.#verify(key, body.byteLength, sha256, signal);
    return put;
  }

  async #verify(key: string, bytes: number, sha256: string, signal: AbortSignal | undefined): Promise<void> {
    const cancelled = (): Promise<void> => (signal?.aborted ? this.#discard(key, new AbortedError(`upload of ${key}`, signal.reason)) : Promise.resolve());
    let head;
    try {
      head = await this.inner.head(key);
    } catch (err) {
      await cancelled();
      throw err;
    }
    await cancelled();
    if (head === null) throw this.#failed(key, 'the object is missing right after the upload');
    if (head.bytes !== bytes) await this.#discard(key, this.#failed(key, `the stored object has ${head.bytes} bytes, the file ${bytes}`));
    if (this.#mode === 'head') {
      if (head.sha256 !== sha256) await this.#discard(key, this.#failed(key, `the object's sha256 metadata is ${head.sha256 ?? 'missing'}, expected ${sha256}`));
      return;
    }
    let actual;
    try {
      actual = await sha256OfStream(await this.inner.get(key, signal === undefined ? {} : { signal }));
    } catch (err) {
      await cancelled();
      throw err;
    }
    if (actual.bytes !== bytes || actual.sha256 !== sha256) {
      await this.#discard(key, this.#failed(key, `downloaded ${actual.bytes} bytes with sha256 ${actual.sha256}, expected ${bytes} bytes with sha256 ${sha256}`));
    }
  }

  #failed(key: string, why: string): BackupError {
    this.#logger.warn({ key, why }, 'stored object failed verification; deleting it');
    return new BackupError('S3_VERIFY_FAILED', `s3://${this.bucket}/${key} failed verification after upload: ${why}; the object was deleted and the upload will be retried`, {
      details: { key, bucket: this.bucket },
    });
  }

  /** Deletes an object that must not stay, then throws `reason` (joined with any delete failure). */
  async #discard(key: string, reason: BackupError): Promise<never> {
    try {
      await this.inner.deleteMany([key]);
    } catch (err) {
      throw combineErrors(reason, [err]);
    }
    throw reason;
  }
}
