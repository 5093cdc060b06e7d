import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type BucketLocationConstraint,
  type S3ClientConfig,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { HashingStream } from '../backup/hashing.ts';
import type { S3Config } from '../config/load.ts';
import { AbortedError, BackupError, combineErrors } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import { assertObjectKey } from './object-key.ts';
import type { ObjectInfo, ObjectStore, PutOptions, PutResult } from './object-store.ts';
import { isS3NotFound, s3ErrorName, s3ErrorToBackupError, s3HttpStatus } from './s3-errors.ts';

const MiB = 1024 * 1024;
/** S3's limits on multipart uploads. */
const maxParts = 10_000;
const maxPartBytes = 5 * 1024 * MiB;
/** S3 refuses DeleteObjects with more keys than this. */
const deleteBatchLimit = 1000;
/** User metadata key (sent as x-amz-meta-sha256): the sha256 of the object's bytes, hex. */
const sha256MetadataKey = 'sha256';

/** Knobs that fleet.yaml does not need; tests use them to exercise paging and verification. */
export interface S3StoreTuning {
  /** MaxKeys of each ListObjectsV2 page (S3 caps it at 1000). */
  readonly listPageSize?: number;
  /** Keys per DeleteObjects request (at most 1000). */
  readonly deleteBatchSize?: number;
  /**
   * Runs after an object is written and before it is verified. Tests use it to replace the object
   * on the server, proving that verification reads what is really stored.
   */
  readonly beforeVerify?: (key: string) => Promise<void>;
}

/** An ObjectStore on AWS S3 or an S3-compatible server. */
export interface S3ObjectStore extends ObjectStore {
  /** Where requests go, without credentials, for messages. */
  readonly endpoint: string;
  /** Creates the bucket when it does not exist (s3.createBucket does this before the first write). */
  ensureBucket(): Promise<void>;
}

/** Part size for a file: the configured one, grown (in whole MiB) so the upload stays within 10,000 parts. */
export function partSizeFor(fileBytes: number, configuredMiB: number): number {
  const configured = configuredMiB * MiB;
  const needed = Math.ceil(Math.ceil(fileBytes / maxParts) / MiB) * MiB;
  return Math.min(Math.max(configured, needed, 5 * MiB), maxPartBytes);
}

function describeEndpoint(config: S3Config): string {
  if (config.endpoint === undefined) return `https://s3.${config.region}.amazonaws.com`;
  try {
    const url = new URL(config.endpoint);
    url.username = '';
    url.password = '';
    return `${url.origin}${url.pathname === '/' ? '' : url.pathname}`;
  } catch {
    return '(invalid s3.endpoint)';
  }
}

/**
 * S3-compatible servers mostly cannot take the SDK's default aws-chunked uploads with CRC32
 * trailers (notes/s3.md), so a custom endpoint defaults to checksums only where required.
 */
function checksumMode(config: S3Config): 'WHEN_REQUIRED' | 'WHEN_SUPPORTED' {
  const mode = config.checksums ?? (config.endpoint === undefined ? 'when-supported' : 'when-required');
  return mode === 'when-required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
}

async function sha256OfStream(body: Readable): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    hash.update(buf);
    bytes += buf.length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** Whether a DeleteObjects failure means the server cannot do batch deletes (so delete one by one). */
function batchDeleteUnsupported(err: unknown): boolean {
  const name = s3ErrorName(err);
  const status = s3HttpStatus(err);
  return (
    ['NotImplemented', 'MethodNotAllowed', 'MissingContentMD5', 'InvalidRequest', 'InvalidDigest', 'BadDigest', 'XNotImplemented'].includes(name) ||
    status === 501 ||
    status === 405
  );
}

class S3Store implements S3ObjectStore {
  readonly description: string;
  readonly bucket: string;
  readonly endpoint: string;
  readonly #client: S3Client;
  readonly #config: S3Config;
  readonly #logger: Logger;
  readonly #tuning: S3StoreTuning;
  readonly #secrets: readonly string[];
  #bucketReady: Promise<void> | null = null;
  #batchDeleteWorks = true;

  constructor(config: S3Config, logger: Logger, tuning: S3StoreTuning) {
    this.#config = config;
    this.#logger = logger.child({ component: 's3' });
    this.#tuning = tuning;
    this.bucket = config.bucket;
    this.endpoint = describeEndpoint(config);
    this.description = `s3://${config.bucket}/${config.prefix}`;
    const checksums = checksumMode(config);
    const clientConfig: S3ClientConfig = {
      region: config.region,
      forcePathStyle: config.forcePathStyle ?? config.endpoint !== undefined,
      requestChecksumCalculation: checksums,
      responseChecksumValidation: checksums,
      // Without a connect timeout a black-holed endpoint hangs an upload for minutes.
      requestHandler: { connectionTimeout: 10_000, socketTimeout: 120_000 },
    };
    if (config.endpoint !== undefined) clientConfig.endpoint = config.endpoint;
    const secrets: string[] = [];
    if (config.accessKeyId !== undefined && config.secretAccessKey !== undefined) {
      const accessKeyId = config.accessKeyId.reveal();
      const secretAccessKey = config.secretAccessKey.reveal();
      const sessionToken = config.sessionToken?.reveal();
      secrets.push(accessKeyId, secretAccessKey, ...(sessionToken === undefined ? [] : [sessionToken]));
      clientConfig.credentials = { accessKeyId, secretAccessKey, ...(sessionToken === undefined ? {} : { sessionToken }) };
    }
    // Otherwise the SDK's default chain: environment, shared config files, instance or task role.
    this.#secrets = secrets;
    this.#client = new S3Client(clientConfig);
  }

  #fail(err: unknown, operation: string, key?: string): BackupError {
    return s3ErrorToBackupError(err, {
      operation,
      bucket: this.bucket,
      endpoint: this.endpoint,
      secrets: this.#secrets,
      ...(key === undefined ? {} : { key }),
    });
  }

  async ensureBucket(): Promise<void> {
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (err) {
      if (!isS3NotFound(err) && s3ErrorName(err) !== 'NoSuchBucket') throw this.#fail(err, 'check of the bucket');
    }
    const onAws = this.#config.endpoint === undefined;
    // AWS wants the region spelled out everywhere but us-east-1; other servers often reject it.
    const location = onAws && this.#config.region !== 'us-east-1' ? { CreateBucketConfiguration: { LocationConstraint: this.#config.region as BucketLocationConstraint } } : {};
    try {
      await this.#client.send(new CreateBucketCommand({ Bucket: this.bucket, ...location }));
      this.#logger.info({ bucket: this.bucket, endpoint: this.endpoint }, 'created the S3 bucket');
    } catch (err) {
      const name = s3ErrorName(err);
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw this.#fail(err, 'creation of the bucket');
    }
  }

  async #beforeWrite(): Promise<void> {
    if (!this.#config.createBucket) return;
    this.#bucketReady ??= this.ensureBucket().catch((err: unknown) => {
      this.#bucketReady = null;
      throw err;
    });
    await this.#bucketReady;
  }

  async putFile(key: string, localPath: string, options: PutOptions = {}): Promise<PutResult> {
    assertObjectKey(key);
    const { signal } = options;
    if (signal?.aborted) throw new AbortedError(`upload of ${key}`, signal.reason);
    let bytes: number;
    try {
      const info = await stat(localPath);
      if (!info.isFile()) throw new Error('not a regular file');
      bytes = info.size;
    } catch (err) {
      throw new BackupError('LOCAL_FILE_UNREADABLE', `cannot upload ${localPath} to ${key}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; the spooled file is gone or unreadable`, {
        cause: err,
        details: { path: localPath, key },
      });
    }
    await this.#beforeWrite();
    // Known before the upload starts, so that it can go into the object's metadata.
    let sha256: string;
    try {
      sha256 = options.expectedSha256 ?? (await sha256OfStream(createReadStream(localPath, signal === undefined ? {} : { signal }))).sha256;
    } catch (err) {
      if (signal?.aborted) throw new AbortedError(`upload of ${key}`, signal.reason);
      throw new BackupError('LOCAL_FILE_UNREADABLE', `cannot read ${localPath}: ${(err as Error).message}`, { cause: err, details: { path: localPath, key } });
    }

    const partSize = partSizeFor(bytes, this.#config.partSizeMiB);
    const file = createReadStream(localPath);
    const body = new HashingStream();
    file.on('error', (err) => body.destroy(err));
    file.pipe(body);
    // Failing the body (rather than Upload.abort(), whose done() rejects before in-flight parts
    // settle) makes done() wait until lib-storage has aborted the multipart upload.
    const onAbort = (): void => {
      file.destroy();
      body.destroy(new AbortedError(`upload of ${key}`, signal?.reason));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const upload = new Upload({
      client: this.#client,
      params: {
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentLength: bytes,
        ContentType: options.contentType ?? 'application/octet-stream',
        Metadata: { [sha256MetadataKey]: sha256 },
        ...(this.#config.storageClass === undefined ? {} : { StorageClass: this.#config.storageClass as StorageClass }),
      },
      partSize,
      queueSize: this.#config.queueSize,
      leavePartsOnError: false,
    });
    const { onProgress } = options;
    if (onProgress) upload.on('httpUploadProgress', (p) => onProgress(p.loaded ?? 0, bytes));
    const started = Date.now();
    this.#logger.debug({ key, bytes, partSize, queueSize: this.#config.queueSize }, 'upload started');
    try {
      await upload.done();
    } catch (err) {
      file.destroy();
      if (signal?.aborted) throw new AbortedError(`upload of ${key}`, signal.reason);
      throw this.#fail(err, 'upload', key);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    // A part that was already in flight (or a single PUT) may have completed despite the abort.
    if (signal?.aborted) await this.#discard(key, new AbortedError(`upload of ${key}`, signal.reason));
    if (body.bytes !== bytes || body.digest() !== sha256) {
      await this.#discard(
        key,
        new BackupError(
          'LOCAL_FILE_CHANGED',
          `${localPath} changed while it was uploaded to ${key} (expected ${bytes} bytes, sha256 ${sha256}; read ${body.bytes} bytes, sha256 ${body.digest()}); ` +
            (options.expectedSha256 === undefined ? 'something else is writing the spool file' : 'the spool file does not match the checksum taken when it was written'),
          { details: { key, path: localPath } },
        ),
      );
    }
    await this.#verify(key, bytes, sha256, signal);
    this.#logger.debug({ key, bytes, ms: Date.now() - started }, 'upload verified');
    onProgress?.(bytes, bytes);
    return { key, bytes, sha256 };
  }

  async putBytes(key: string, data: Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    assertObjectKey(key);
    const { signal } = options;
    if (signal?.aborted) throw new AbortedError(`upload of ${key}`, signal.reason);
    await this.#beforeWrite();
    const sha256 = createHash('sha256').update(data).digest('hex');
    if (options.expectedSha256 !== undefined && options.expectedSha256 !== sha256) {
      throw new BackupError('LOCAL_FILE_CHANGED', `the bytes for ${key} do not match the expected sha256; nothing was uploaded`, { details: { key } });
    }
    try {
      // Small objects (the manifest) keep the standard storage class so listing and restore can read them at once.
      await this.#client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: data,
          ContentLength: data.byteLength,
          ContentType: options.contentType ?? 'application/octet-stream',
          Metadata: { [sha256MetadataKey]: sha256 },
        }),
        signal === undefined ? {} : { abortSignal: signal },
      );
    } catch (err) {
      if (signal?.aborted) throw new AbortedError(`upload of ${key}`, signal.reason);
      throw this.#fail(err, 'upload', key);
    }
    if (signal?.aborted) await this.#discard(key, new AbortedError(`upload of ${key}`, signal.reason));
    await this.#verify(key, data.byteLength, sha256, signal);
    options.onProgress?.(data.byteLength, data.byteLength);
    return { key, bytes: data.byteLength, sha256 };
  }

  /**
   * Checks what the server really holds. "download" re-reads the object and hashes it: the only
   * check that catches a server that stored different bytes. "head" compares the size and the
   * sha256 in the object's metadata — but that metadata is what we sent, so it proves only that
   * an object of the right size from this upload is there, not that its bytes are right.
   */
  async #verify(key: string, bytes: number, sha256: string, signal?: AbortSignal): Promise<void> {
    if (this.#tuning.beforeVerify) await this.#tuning.beforeVerify(key);
    let head;
    try {
      head = await this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), signal === undefined ? {} : { abortSignal: signal });
    } catch (err) {
      if (signal?.aborted) await this.#discard(key, new AbortedError(`upload of ${key}`, signal.reason));
      if (!isS3NotFound(err)) throw this.#fail(err, 'verification', key);
      throw this.#verifyFailed(key, 'the object is missing right after the upload');
    }
    if (head.ContentLength !== bytes) {
      await this.#discard(key, this.#verifyFailed(key, `the stored object has ${head.ContentLength ?? 'unknown'} bytes, the file ${bytes}`));
    }
    if (this.#config.verify === 'head') {
      const stored = head.Metadata?.[sha256MetadataKey];
      if (stored !== sha256) await this.#discard(key, this.#verifyFailed(key, `the object's sha256 metadata is ${stored ?? 'missing'}, expected ${sha256}`));
      return;
    }
    let actual;
    try {
      const res = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), signal === undefined ? {} : { abortSignal: signal });
      actual = await sha256OfStream(res.Body as Readable);
    } catch (err) {
      if (signal?.aborted) await this.#discard(key, new AbortedError(`upload of ${key}`, signal.reason));
      throw this.#fail(err, 'verification download', key);
    }
    if (actual.bytes !== bytes || actual.sha256 !== sha256) {
      await this.#discard(key, this.#verifyFailed(key, `downloaded ${actual.bytes} bytes with sha256 ${actual.sha256}, expected ${bytes} bytes with sha256 ${sha256}`));
    }
  }

  #verifyFailed(key: string, why: string): BackupError {
    this.#logger.warn({ key, why }, 'S3 object failed verification; deleting it');
    return new BackupError('S3_VERIFY_FAILED', `s3://${this.bucket}/${key} failed verification after upload: ${why}; the object was deleted and the upload will be retried`, {
      details: { key, bucket: this.bucket },
    });
  }

  /** Deletes an object that must not stay, then throws `reason` (joined with any delete failure). */
  async #discard(key: string, reason: BackupError): Promise<never> {
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      throw combineErrors(reason, [this.#fail(err, 'deletion of a bad object', key)]);
    }
    throw reason;
  }

  async get(key: string, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    assertObjectKey(key);
    try {
      const res = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), options.signal === undefined ? {} : { abortSignal: options.signal });
      const body = res.Body as Readable;
      // A connection lost mid-download should reach the reader as a coded error, not a bare ECONNRESET.
      const out = new PassThrough();
      body.on('error', (err) => out.destroy(options.signal?.aborted ? new AbortedError(`download of ${key}`, options.signal.reason) : this.#fail(err, 'download', key)));
      out.on('close', () => body.destroy());
      return body.pipe(out);
    } catch (err) {
      if (options.signal?.aborted) throw new AbortedError(`download of ${key}`, options.signal.reason);
      throw this.#fail(err, 'download', key);
    }
  }

  async getBytes(key: string): Promise<Buffer> {
    assertObjectKey(key);
    try {
      const res = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!res.Body) return Buffer.alloc(0);
      return Buffer.from(await res.Body.transformToByteArray());
    } catch (err) {
      throw this.#fail(err, 'download', key);
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    assertObjectKey(key);
    try {
      const res = await this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { key, bytes: res.ContentLength ?? 0, lastModified: res.LastModified ?? new Date(0) };
    } catch (err) {
      if (isS3NotFound(err)) return null;
      throw this.#fail(err, 'lookup', key);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    assertObjectKey(prefix, 'prefix');
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.#client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            ...(token === undefined ? {} : { ContinuationToken: token }),
            ...(this.#tuning.listPageSize === undefined ? {} : { MaxKeys: this.#tuning.listPageSize }),
          }),
        );
      } catch (err) {
        throw this.#fail(err, 'listing', prefix);
      }
      for (const obj of page.Contents ?? []) {
        if (obj.Key === undefined) continue;
        yield { key: obj.Key, bytes: obj.Size ?? 0, lastModified: obj.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    const unique = [...new Set(keys)];
    for (const key of unique) assertObjectKey(key);
    const size = Math.min(Math.max(this.#tuning.deleteBatchSize ?? deleteBatchLimit, 1), deleteBatchLimit);
    for (let i = 0; i < unique.length; i += size) {
      const batch = unique.slice(i, i + size);
      if (this.#batchDeleteWorks) {
        try {
          await this.#deleteBatch(batch);
          continue;
        } catch (err) {
          if (!batchDeleteUnsupported(err)) throw this.#fail(err, 'deletion', batch[0]);
          this.#logger.debug({ s3Code: s3ErrorName(err), endpoint: this.endpoint }, 'server refuses DeleteObjects; deleting one object at a time');
          this.#batchDeleteWorks = false;
        }
      }
      await this.#deleteEach(batch);
    }
  }

  async #deleteBatch(keys: readonly string[]): Promise<void> {
    const res = await this.#client.send(
      new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }),
    );
    const failures = (res.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
    const first = failures[0];
    if (first !== undefined) {
      throw this.#fail(Object.assign(new Error(first.Message ?? 'delete failed'), { name: first.Code ?? 'Error', Code: first.Code }), `deletion of ${failures.length} object(s)`, first.Key);
    }
  }

  async #deleteEach(keys: readonly string[]): Promise<void> {
    const queue = [...keys];
    const worker = async (): Promise<void> => {
      for (let key = queue.shift(); key !== undefined; key = queue.shift()) {
        try {
          await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
        } catch (err) {
          if (!isS3NotFound(err)) throw this.#fail(err, 'deletion', key);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, queue.length) }, worker));
  }

  async abortIncompleteUploads(prefix: string, olderThanMs: number): Promise<number> {
    assertObjectKey(prefix, 'prefix');
    const cutoff = Date.now() - olderThanMs;
    let aborted = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await this.#client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: prefix,
            ...(keyMarker === undefined ? {} : { KeyMarker: keyMarker }),
            ...(uploadIdMarker === undefined ? {} : { UploadIdMarker: uploadIdMarker }),
          }),
        );
      } catch (err) {
        const name = s3ErrorName(err);
        const status = s3HttpStatus(err);
        if (name === 'NotImplemented' || name === 'MethodNotAllowed' || status === 501 || status === 405) {
          this.#logger.debug({ s3Code: name, endpoint: this.endpoint }, 'server cannot list multipart uploads; none aborted');
          return aborted;
        }
        throw this.#fail(err, 'listing of incomplete uploads', prefix);
      }
      // Some servers answer this request with an object listing: it has no Bucket element.
      if (page.Bucket === undefined && page.Uploads === undefined) {
        this.#logger.debug({ endpoint: this.endpoint }, 'server does not list multipart uploads; none aborted');
        return aborted;
      }
      for (const upload of page.Uploads ?? []) {
        // An upload without a start time may be another worker's, in progress: leave it.
        if (upload.Key === undefined || upload.UploadId === undefined || upload.Initiated === undefined) continue;
        if (upload.Initiated.getTime() > cutoff) continue;
        try {
          await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: upload.Key, UploadId: upload.UploadId }));
          aborted += 1;
          this.#logger.info({ key: upload.Key, initiated: upload.Initiated.toISOString() }, 'aborted an incomplete multipart upload');
        } catch (err) {
          if (s3ErrorName(err) !== 'NoSuchUpload') throw this.#fail(err, 'abort of an incomplete upload', upload.Key);
        }
      }
      if (!page.IsTruncated || (page.NextKeyMarker === undefined && page.NextUploadIdMarker === undefined)) return aborted;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  close(): void {
    this.#client.destroy();
  }

  toJSON(): Record<string, string> {
    return { description: this.description, endpoint: this.endpoint };
  }
}

/**
 * The S3 object store from `s3` in fleet.yaml. Credentials are revealed here only, into the SDK
 * client, which lives in a private field: the store prints and serialises without them.
 */
export function createS3ObjectStore(config: S3Config, logger: Logger = silentLogger, tuning: S3StoreTuning = {}): S3ObjectStore {
  return new S3Store(config, logger, tuning);
}
