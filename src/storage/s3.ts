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
import type { S3Config } from '../config/load.ts';
import { throwIfAborted } from '../abort.ts';
import { AbortedError, type BackupError } from '../errors.ts';
import { sha256Of } from '../hashing.ts';
import { silentLogger, type Logger } from '../log.ts';
import { LocalFileError, uploadFile } from './file-upload.ts';
import { assertObjectKey } from './object-key.ts';
import { localFileUnreadable, type ObjectInfo, type ObjectStore, type PutOptions, type PutResult } from './object-store.ts';
import { isS3NotFound, isUnsupportedByServer, s3ErrorName, s3ErrorToBackupError, s3HttpStatus } from './s3-errors.ts';
import { VerifiedStore } from './verified-store.ts';

const MiB = 1024 * 1024;
/** S3's limits on multipart uploads. */
const maxParts = 10_000;
const maxPartBytes = 5 * 1024 * MiB;
/** S3 refuses DeleteObjects with more keys than this. */
const deleteBatchLimit = 1000;
/** User metadata key (sent as x-amz-meta-sha256): the sha256 of the object's bytes, hex. */
const sha256MetadataKey = 'sha256';

/** s3.serverSideEncryption / kmsKeyId as request parameters: the same on every PUT and multipart upload. */
export function sseParams(config: Pick<S3Config, 'serverSideEncryption' | 'kmsKeyId'>): { ServerSideEncryption?: 'AES256' | 'aws:kms'; SSEKMSKeyId?: string } {
  if (config.serverSideEncryption === undefined) return {};
  return { ServerSideEncryption: config.serverSideEncryption, ...(config.kmsKeyId === undefined ? {} : { SSEKMSKeyId: config.kmsKeyId }) };
}

/** Knobs that fleet.yaml does not need; tests use them to exercise paging. */
export interface S3StoreTuning {
  /** Entries per listing page: MaxKeys of ListObjectsV2 and MaxUploads of ListMultipartUploads (S3 caps both at 1000). */
  readonly listPageSize?: number;
  /** Keys per DeleteObjects request (at most 1000). */
  readonly deleteBatchSize?: number;
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

/** Whether a DeleteObjects failure means the server cannot do batch deletes (so delete one by one). */
function batchDeleteUnsupported(err: unknown): boolean {
  // Some servers insist on a Content-MD5 that the SDK sends only with checksums when supported.
  return isUnsupportedByServer(err, ['MissingContentMD5', 'InvalidRequest', 'InvalidDigest', 'BadDigest']);
}

/**
 * The S3 backend: each ObjectStore method is one S3 request (or one multipart upload, file-upload.ts)
 * with its errors mapped by s3-errors.ts; the contract is in object-store.ts. It checks nothing
 * it wrote — `createS3ObjectStore` wraps it in a VerifiedStore for that.
 */
export class S3Backend implements ObjectStore {
  readonly description: string;
  readonly bucket: string;
  /** Where requests go, without credentials, for messages. */
  readonly endpoint: string;
  readonly #client: S3Client;
  readonly #config: S3Config;
  readonly #logger: Logger;
  readonly #tuning: S3StoreTuning;
  readonly #secrets: readonly string[];
  #bucketReady: Promise<void> | null = null;
  #batchDeleteWorks = true;

  constructor(config: S3Config, logger: Logger = silentLogger, tuning: S3StoreTuning = {}) {
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

  /** Creates the bucket when it does not exist (s3.createBucket does this before the first write). */
  async ensureBucket(): Promise<void> {
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (err) {
      // The IAM policy that `vcsa-backup iam-policy` prints allows listing only under the prefix,
      // and HEAD of a bucket needs s3:ListBucket without one: let CreateBucket answer instead.
      const refused = s3HttpStatus(err) === 403;
      if (!refused && !isS3NotFound(err) && s3ErrorName(err) !== 'NoSuchBucket') throw this.#fail(err, 'check of the bucket');
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
    const { signal, onProgress, expectedSha256 } = options;
    const what = `upload of ${key}`;
    throwIfAborted(signal, what);
    let bytes: number;
    try {
      const info = await stat(localPath);
      if (!info.isFile()) throw new Error('not a regular file');
      bytes = info.size;
    } catch (err) {
      throw localFileUnreadable(localPath, key, err);
    }
    await this.#beforeWrite();

    const partSize = partSizeFor(bytes, this.#config.partSizeMiB);
    this.#logger.debug({ key, bytes, partSize, queueSize: this.#config.queueSize }, 'upload started');
    let sha256: string;
    try {
      ({ sha256 } = await uploadFile({
        client: this.#client,
        path: localPath,
        bytes,
        partSize,
        queueSize: this.#config.queueSize,
        object: {
          Bucket: this.bucket,
          Key: key,
          ContentType: options.contentType ?? 'application/octet-stream',
          ...(expectedSha256 === undefined ? {} : { Metadata: { [sha256MetadataKey]: expectedSha256 } }),
          ...(this.#config.storageClass === undefined ? {} : { StorageClass: this.#config.storageClass as StorageClass }),
          ...sseParams(this.#config),
        },
        checksums: checksumMode(this.#config) === 'WHEN_SUPPORTED',
        signal,
        onProgress,
      }));
    } catch (err) {
      throwIfAborted(signal, what);
      if (err instanceof LocalFileError) throw localFileUnreadable(localPath, key, err.cause ?? err);
      throw this.#fail(err, 'upload', key);
    }
    return { key, bytes, sha256 };
  }

  async putBytes(key: string, data: Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    assertObjectKey(key);
    const { signal } = options;
    const what = `upload of ${key}`;
    throwIfAborted(signal, what);
    await this.#beforeWrite();
    const sha256 = sha256Of(data);
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
          ...sseParams(this.#config),
        }),
        signal === undefined ? {} : { abortSignal: signal },
      );
    } catch (err) {
      throwIfAborted(signal, what);
      throw this.#fail(err, 'upload', key);
    }
    options.onProgress?.(data.byteLength, data.byteLength);
    return { key, bytes: data.byteLength, sha256 };
  }

  async get(key: string, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    assertObjectKey(key);
    const { signal } = options;
    const what = `download of ${key}`;
    try {
      const res = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), signal === undefined ? {} : { abortSignal: signal });
      const body = res.Body as Readable;
      // A connection lost mid-download should reach the reader as a coded error, not a bare ECONNRESET.
      const out = new PassThrough();
      body.on('error', (err) => out.destroy(signal?.aborted ? new AbortedError(what, signal.reason) : this.#fail(err, 'download', key)));
      out.on('close', () => body.destroy());
      return body.pipe(out);
    } catch (err) {
      throwIfAborted(signal, what);
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
      const sha256 = res.Metadata?.[sha256MetadataKey];
      return { key, bytes: res.ContentLength ?? 0, lastModified: res.LastModified ?? new Date(0), ...(sha256 === undefined ? {} : { sha256 }) };
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

  async abortIncompleteUploads(prefix: string, startedBefore: Date): Promise<number> {
    assertObjectKey(prefix, 'prefix');
    const cutoff = startedBefore.getTime();
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
            ...(this.#tuning.listPageSize === undefined ? {} : { MaxUploads: this.#tuning.listPageSize }),
          }),
        );
      } catch (err) {
        if (!isUnsupportedByServer(err)) throw this.#fail(err, 'listing of incomplete uploads', prefix);
        this.#logger.debug({ s3Code: s3ErrorName(err), endpoint: this.endpoint }, 'server cannot list multipart uploads; none aborted');
        return aborted;
      }
      // Some servers (fauxqs) answer this request with an object listing: it has no Bucket element.
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
          // Completed or aborted by someone else since the listing: nothing left to do.
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
 * The object store the tool uses for `s3` in fleet.yaml: the S3 backend with every write verified
 * (s3.verify: download or head). Credentials are revealed only into the SDK client, which lives in
 * a private field: the store prints and serialises without them.
 */
export function createS3ObjectStore(config: S3Config, logger: Logger = silentLogger, tuning: S3StoreTuning = {}): ObjectStore {
  return new VerifiedStore(new S3Backend(config, logger, tuning), { mode: config.verify, logger });
}
