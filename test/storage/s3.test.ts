import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3ServiceException,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Secret } from '../../src/config/secret.ts';
import { sha256Of } from '../../src/hashing.ts';
import { silentLogger } from '../../src/log.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import { ForwardingStore, type ObjectStore, type PutOptions, type PutResult } from '../../src/storage/object-store.ts';
import { isUnsupportedByServer, s3ErrorToBackupError } from '../../src/storage/s3-errors.ts';
import { createS3ObjectStore, partSizeFor, S3Backend } from '../../src/storage/s3.ts';
import { VerifiedStore, type VerifyMode } from '../../src/storage/verified-store.ts';
import { rawS3Client, s3ConfigFor } from '../support/s3.ts';
import { freePort } from '../support/sshd.ts';
import { startSwiftS3 } from '../support/swift-s3.ts';
import { objectStoreContract, rejectsWithCode, sha256OfStream, writeRandomFile } from './contract.ts';

const MiB = 1024 * 1024;
/** fauxqs, the embedded endpoint. */
let s3: EmbeddedS3;
let raw: S3Client;
/** Swift's s3api: lists multipart uploads, refuses DeleteObjects without Content-MD5. */
let swift: EmbeddedS3;
let rawSwift: S3Client;

before(async () => {
  [s3, swift] = await Promise.all([startEmbeddedS3({ bucket: `contract-${randomUUID().slice(0, 8)}` }), startSwiftS3({ bucket: `contract-${randomUUID().slice(0, 8)}` })]);
  raw = rawS3Client(s3);
  rawSwift = rawS3Client(swift);
});

after(async () => {
  raw?.destroy();
  rawSwift?.destroy();
  await s3?.stop();
  await swift?.stop();
});

const sut = (store: ObjectStore) => Promise.resolve({ store, cleanup: () => Promise.resolve(store.close()) });

// Small listing pages, so every listing in the contract pages through continuation tokens.
objectStoreContract('S3 backend alone (embedded endpoint, SDK default checksums)', () =>
  sut(new S3Backend(s3ConfigFor(s3, { checksums: 'when-supported', queueSize: 1 }), silentLogger, { listPageSize: 3, deleteBatchSize: 2 })),
);

objectStoreContract('verified S3 store (embedded endpoint, checksums when required, verify by download)', () =>
  sut(createS3ObjectStore(s3ConfigFor(s3), silentLogger, { listPageSize: 2 })),
);

objectStoreContract('verified S3 store (Swift s3api, verify by head)', () => sut(createS3ObjectStore(s3ConfigFor(swift, { verify: 'head' }), silentLogger, { listPageSize: 2 })));

/** Replaces every object on the server right after it is written: what a misbehaving server would hold. */
class ReplacingStore extends ForwardingStore {
  readonly #replace: (key: string) => Promise<unknown>;

  constructor(inner: ObjectStore, replace: (key: string) => Promise<unknown>) {
    super(inner);
    this.#replace = replace;
  }

  override async putFile(key: string, localPath: string, options?: PutOptions): Promise<PutResult> {
    const put = await super.putFile(key, localPath, options);
    await this.#replace(key);
    return put;
  }

  override async putBytes(key: string, body: Uint8Array, options?: PutOptions): Promise<PutResult> {
    const put = await super.putBytes(key, body, options);
    await this.#replace(key);
    return put;
  }
}

void describe('S3 store specifics', () => {
  let dir: string;
  const base = `specific-${randomUUID().slice(0, 8)}`;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 's3-store-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A verified store over a backend whose objects are replaced by `body` between upload and verification. */
  const tampered = (body: Buffer, options: { withSha256?: string; mode?: VerifyMode } = {}): ObjectStore => {
    const { withSha256, mode = 'download' } = options;
    const replace = (key: string) => raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body, ...(withSha256 ? { Metadata: { sha256: withSha256 } } : {}) }));
    return new VerifiedStore(new ReplacingStore(new S3Backend(s3ConfigFor(s3)), replace), { mode });
  };

  void test('verify=download detects same-size different bytes on the server and deletes the object', async () => {
    const path = join(dir, 'tampered.bin');
    await writeRandomFile(path, 200_000);
    const store = tampered(randomBytes(200_000));
    try {
      const key = `${base}/tampered/f`;
      const err = await rejectsWithCode(store.putFile(key, path), 'S3_VERIFY_FAILED');
      assert.equal(err.permanent, false);
      assert.match(err.message, /sha256/);
      assert.equal(await store.head(key), null, 'the bad object was deleted');
      // Same for the manifest path.
      await rejectsWithCode(store.putBytes(`${base}/tampered/m.json`, randomBytes(200_000)), 'S3_VERIFY_FAILED');
      assert.equal(await store.head(`${base}/tampered/m.json`), null);
    } finally {
      store.close();
    }
  });

  void test('a size mismatch is detected, in both verify modes', async () => {
    const path = join(dir, 'short.bin');
    await writeRandomFile(path, 100_000);
    for (const verify of ['download', 'head'] as const) {
      const store = tampered(randomBytes(99_999), { mode: verify });
      try {
        const key = `${base}/short-${verify}/f`;
        const err = await rejectsWithCode(store.putFile(key, path), 'S3_VERIFY_FAILED');
        assert.match(err.message, /99999 bytes/);
        assert.equal(await store.head(key), null);
      } finally {
        store.close();
      }
    }
  });

  void test('verify=head catches an object replaced without our sha256 metadata, but trusts matching metadata (its documented weakness)', async () => {
    const path = join(dir, 'head.bin');
    const sha256 = await writeRandomFile(path, 100_000);
    const strangers = tampered(randomBytes(100_000), { mode: 'head' });
    const forgers = tampered(randomBytes(100_000), { withSha256: sha256, mode: 'head' });
    const downloader = tampered(randomBytes(100_000), { withSha256: sha256, mode: 'download' });
    try {
      await rejectsWithCode(strangers.putFile(`${base}/head/a`, path), 'S3_VERIFY_FAILED');
      const forged = await forgers.putFile(`${base}/head/b`, path);
      assert.equal(forged.sha256, sha256, 'head mode cannot see through metadata that matches');
      await rejectsWithCode(downloader.putFile(`${base}/head/c`, path), 'S3_VERIFY_FAILED');
    } finally {
      strangers.close();
      forgers.close();
      downloader.close();
    }
  });

  void test('every object carries its sha256 as user metadata', async () => {
    const store = createS3ObjectStore(s3ConfigFor(s3));
    try {
      const path = join(dir, 'meta.bin');
      const sha256 = await writeRandomFile(path, 6 * MiB);
      await store.putFile(`${base}/meta/big`, path);
      const body = Buffer.from('{}');
      await store.putBytes(`${base}/meta/small`, body);
      const big = await raw.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `${base}/meta/big` }));
      const small = await raw.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `${base}/meta/small` }));
      assert.equal(big.Metadata?.['sha256'], sha256);
      assert.equal(small.Metadata?.['sha256'], sha256Of(body));
    } finally {
      store.close();
    }
  });

  void test('a wrong expectedSha256 fails the upload and leaves no object', async () => {
    const store = createS3ObjectStore(s3ConfigFor(s3));
    try {
      const path = join(dir, 'wrong-sha.bin');
      await writeRandomFile(path, 10_000);
      const key = `${base}/wrong-sha/f`;
      await rejectsWithCode(store.putFile(key, path, { expectedSha256: '0'.repeat(64) }), 'LOCAL_FILE_CHANGED');
      assert.equal(await store.head(key), null);
    } finally {
      store.close();
    }
  });

  void test('a signal that fires after the backend stored the object still leaves no object (the verified store deletes it)', async () => {
    const path = join(dir, 'late-abort.bin');
    await writeRandomFile(path, 50_000);
    const controller = new AbortController();
    // The moment between "the last part is stored" and "putFile returns", when no request is in
    // flight for the signal to cancel.
    class AbortsWhenStored extends ForwardingStore {
      override async putFile(key: string, localPath: string, options?: PutOptions): Promise<PutResult> {
        const put = await super.putFile(key, localPath, options);
        controller.abort(new Error('operator cancelled'));
        return put;
      }
    }
    const store = new VerifiedStore(new AbortsWhenStored(new S3Backend(s3ConfigFor(s3))), { mode: 'download' });
    try {
      const key = `${base}/late-abort/f`;
      await rejectsWithCode(store.putFile(key, path, { signal: controller.signal }), 'ABORTED');
      assert.equal(await store.head(key), null);
    } finally {
      store.close();
    }
  });

  /** Every multipart upload in progress under `prefix` on the Swift server, straight from the server. */
  const uploadsOnSwift = async (prefix: string): Promise<string[]> => {
    const page = await rawSwift.send(new ListMultipartUploadsCommand({ Bucket: swift.bucket, Prefix: prefix }));
    assert.equal(page.IsTruncated, false);
    return (page.Uploads ?? []).map((u) => u.Key ?? '?').sort();
  };

  void test('an upload aborted mid-way leaves no incomplete multipart upload on a server that lists them', async () => {
    const store = createS3ObjectStore(s3ConfigFor(swift, { queueSize: 1 }));
    const prefix = `${base}/abort-mpu/`;
    try {
      // The probe sees an upload in progress: without this, an empty listing would prove nothing.
      const control = await rawSwift.send(new CreateMultipartUploadCommand({ Bucket: swift.bucket, Key: `${prefix}control` }));
      assert.deepEqual(await uploadsOnSwift(prefix), [`${prefix}control`]);
      await rawSwift.send(new AbortMultipartUploadCommand({ Bucket: swift.bucket, Key: `${prefix}control`, UploadId: control.UploadId! }));

      const path = join(dir, 'abort-mpu.bin');
      await writeRandomFile(path, 26 * MiB);
      const controller = new AbortController();
      let maxSent = 0;
      const upload = store.putFile(`${prefix}f`, path, {
        signal: controller.signal,
        onProgress: (sent) => {
          maxSent = Math.max(maxSent, sent);
          if (sent > 0) controller.abort();
        },
      });
      await rejectsWithCode(upload, 'ABORTED');
      assert.ok(maxSent <= 10 * MiB, `the upload stopped early instead of sending all 26 MiB (sent ${maxSent})`);
      assert.equal(await store.head(`${prefix}f`), null);
      assert.deepEqual(await uploadsOnSwift(prefix), []);
    } finally {
      store.close();
    }
  });

  void test('abortIncompleteUploads returns 0 on a server that cannot list them', async () => {
    const store = createS3ObjectStore(s3ConfigFor(s3));
    try {
      await raw.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: `${base}/mpu/x` }));
      assert.equal(await store.abortIncompleteUploads(`${base}/`, new Date(Date.now() + 60_000)), 0);
    } finally {
      store.close();
    }
  });

  void test('abortIncompleteUploads: only under the prefix, only those started before the cutoff, page by page; one aborted by someone else meanwhile is no error', async () => {
    const prefix = `${base}/incomplete/`;
    const mine = ['a', 'b', 'c', 'd', 'e'].map((n) => `${prefix}vc01/${n}`);
    const others = `${base}/incomplete-not-mine/x`;
    for (const key of [...mine, others]) await rawSwift.send(new CreateMultipartUploadCommand({ Bucket: swift.bucket, Key: key }));

    // Between the store and the server: logs every request and, on the store's first abort,
    // aborts that upload itself first, as another worker's prune would.
    const requests: { method: string; params: string[] }[] = [];
    const count = (method: string, param: string): number => requests.filter((r) => r.method === method && r.params.includes(param)).length;
    let raced: string | undefined;
    const target = new URL(swift.endpoint);
    const proxy: Server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', swift.endpoint);
      requests.push({ method: req.method ?? '?', params: [...url.searchParams.keys()] });
      const forward = (): void => {
        const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        });
        upstream.on('error', (err) => res.destroy(err));
        req.pipe(upstream);
      };
      const uploadId = url.searchParams.get('uploadId');
      if (req.method !== 'DELETE' || uploadId === null || raced !== undefined) return forward();
      raced = decodeURIComponent(url.pathname.slice(`/${swift.bucket}/`.length));
      rawSwift.send(new AbortMultipartUploadCommand({ Bucket: swift.bucket, Key: raced, UploadId: uploadId })).then(forward, (err: unknown) => res.destroy(err as Error));
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const address = proxy.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const store = createS3ObjectStore(s3ConfigFor({ ...swift, endpoint: `http://127.0.0.1:${port}` }), silentLogger, { listPageSize: 2 });
    try {
      // Started just now: not before an hour ago, so nothing is aborted.
      assert.equal(await store.abortIncompleteUploads(prefix, new Date(Date.now() - 3_600_000)), 0);
      assert.deepEqual(await uploadsOnSwift(prefix), mine);

      requests.length = 0;
      // Started before a minute from now: all of them, the raced one not counted.
      assert.equal(await store.abortIncompleteUploads(prefix, new Date(Date.now() + 60_000)), mine.length - 1);
      assert.ok(raced !== undefined && mine.includes(raced), `someone else aborted ${raced}`);
      assert.deepEqual(await uploadsOnSwift(prefix), []);
      assert.deepEqual(await uploadsOnSwift(others), [others], 'an upload outside the prefix is left alone');
      assert.equal(count('GET', 'uploads'), 3, `five uploads in pages of two take three listings: ${JSON.stringify(requests)}`);
      assert.equal(count('DELETE', 'uploadId'), mine.length);
    } finally {
      store.close();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  void test('a missing bucket is S3_NO_SUCH_BUCKET (permanent); createBucket creates it', async () => {
    const bucket = `missing-${randomUUID().slice(0, 8)}`;
    const store = createS3ObjectStore(s3ConfigFor(s3, { bucket }));
    const creating = new S3Backend(s3ConfigFor(s3, { bucket, createBucket: true }));
    try {
      const err = await rejectsWithCode(store.putBytes('a/b', Buffer.from('x')), 'S3_NO_SUCH_BUCKET');
      assert.equal(err.permanent, true);
      assert.match(err.message, /createBucket/);
      await rejectsWithCode(store.getBytes('a/b'), 'S3_NO_SUCH_BUCKET');
      await creating.putBytes('a/b', Buffer.from('x'));
      assert.deepEqual(await store.getBytes('a/b'), Buffer.from('x'));
      await creating.ensureBucket();
    } finally {
      store.close();
      creating.close();
    }
  });

  void test('an endpoint with nothing listening is S3_UNREACHABLE, retryable, and names the endpoint', async () => {
    const port = await freePort();
    const store = createS3ObjectStore(s3ConfigFor({ ...s3, endpoint: `http://127.0.0.1:${port}` }));
    try {
      const path = join(dir, 'unreachable.bin');
      await writeRandomFile(path, 1000);
      const err = await rejectsWithCode(store.putFile(`${base}/down/f`, path), 'S3_UNREACHABLE');
      assert.equal(err.permanent, false);
      assert.ok(err.message.includes(`127.0.0.1:${port}`), err.message);
      await rejectsWithCode(store.head(`${base}/down/f`), 'S3_UNREACHABLE');
      await rejectsWithCode(store.deleteMany([`${base}/down/f`]), 'S3_UNREACHABLE');
    } finally {
      store.close();
    }
  });

  void test('a server that stops is S3_UNREACHABLE', async () => {
    const other = await startEmbeddedS3();
    const store = createS3ObjectStore(s3ConfigFor(other));
    try {
      await store.putBytes('k/v', Buffer.from('before'));
      await other.stop();
      const err = await rejectsWithCode(store.getBytes('k/v'), 'S3_UNREACHABLE');
      assert.equal(err.permanent, false);
    } finally {
      store.close();
    }
  });

  void test('secrets appear neither in the store nor in its errors', async () => {
    const accessKeyId = `AKIA${randomBytes(8).toString('hex').toUpperCase()}`;
    const secretAccessKey = randomBytes(20).toString('base64');
    const sessionToken = `tok-${randomBytes(16).toString('hex')}`;
    const port = await freePort();
    const config = s3ConfigFor(
      { ...s3, endpoint: `http://127.0.0.1:${port}` },
      { accessKeyId: new Secret(accessKeyId, 'env A'), secretAccessKey: new Secret(secretAccessKey, 'env B'), sessionToken: new Secret(sessionToken, 'env C') },
    );
    const store = createS3ObjectStore(config);
    try {
      const leaks = (text: string) => [accessKeyId, secretAccessKey, sessionToken].filter((s) => text.includes(s));
      assert.deepEqual(leaks(JSON.stringify(store)), []);
      assert.deepEqual(leaks(inspect(store, { depth: Infinity, showHidden: true })), []);
      assert.deepEqual(leaks(JSON.stringify(config)), []);
      const err = await rejectsWithCode(store.putBytes(`${base}/secret/x`, Buffer.from('x')), 'S3_UNREACHABLE');
      assert.deepEqual(leaks(err.message), []);
      assert.deepEqual(leaks(inspect(err, { depth: Infinity })), []);
      assert.deepEqual(leaks(JSON.stringify(err.details)), []);
      // And an SDK message that quotes a credential (as some servers do) is scrubbed.
      const mapped = s3ErrorToBackupError(new Error(`bad key ${secretAccessKey} for ${accessKeyId}`), {
        operation: 'upload',
        bucket: 'b',
        endpoint: 'http://x',
        secrets: [accessKeyId, secretAccessKey],
      });
      assert.deepEqual(leaks(mapped.message), []);
    } finally {
      store.close();
    }
  });

  void test('SDK errors map to stable codes', () => {
    const ctx = { operation: 'upload', bucket: 'backups', key: 'vcsa/a/f', endpoint: 'https://s3.example' };
    const sdk = (name: string, status: number) =>
      new S3ServiceException({ name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status }, message: `${name} happened` });
    for (const name of ['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied']) {
      const e = s3ErrorToBackupError(sdk(name, 403), ctx);
      assert.equal(e.code, 'S3_AUTH');
      assert.equal(e.permanent, true);
      assert.match(e.message, /credentials/);
      assert.match(e.message, /IAM policy/);
    }
    assert.equal(s3ErrorToBackupError(sdk('Forbidden', 403), ctx).code, 'S3_AUTH');
    const noBucket = s3ErrorToBackupError(sdk('NoSuchBucket', 404), ctx);
    assert.deepEqual([noBucket.code, noBucket.permanent], ['S3_NO_SUCH_BUCKET', true]);
    assert.equal(s3ErrorToBackupError(sdk('NoSuchKey', 404), ctx).code, 'OBJECT_NOT_FOUND');
    const slow = s3ErrorToBackupError(sdk('SlowDown', 503), ctx);
    assert.deepEqual([slow.code, slow.permanent], ['S3_ERROR', false]);
    const refused = s3ErrorToBackupError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), ctx);
    assert.deepEqual([refused.code, refused.permanent], ['S3_UNREACHABLE', false]);
    assert.match(refused.message, /https:\/\/s3\.example/);
    const timeout = s3ErrorToBackupError(Object.assign(new Error('socket hang up'), { name: 'TimeoutError' }), ctx);
    assert.equal(timeout.code, 'S3_UNREACHABLE');
    assert.equal(s3ErrorToBackupError(sdk('PermanentRedirect', 301), ctx).permanent, true);
    for (const tooLarge of [sdk('EntityTooLarge', 400), sdk('Error', 413)]) {
      const e = s3ErrorToBackupError(tooLarge, ctx);
      assert.deepEqual([e.code, e.permanent], ['S3_ENTITY_TOO_LARGE', true]);
      assert.match(e.message, /s3\.partSizeMiB/);
    }
    // "This server cannot do that": fall back or skip, never fail.
    assert.equal(isUnsupportedByServer(sdk('NotImplemented', 501)), true);
    assert.equal(isUnsupportedByServer(sdk('MethodNotAllowed', 405)), true);
    assert.equal(isUnsupportedByServer(sdk('InvalidRequest', 400)), false);
    assert.equal(isUnsupportedByServer(sdk('InvalidRequest', 400), ['InvalidRequest']), true);
    assert.equal(isUnsupportedByServer(sdk('AccessDenied', 403)), false);
  });

  void test('part size grows so that a file stays within 10,000 parts', () => {
    assert.equal(partSizeFor(12 * MiB, 5), 5 * MiB);
    assert.equal(partSizeFor(10 * MiB, 16), 16 * MiB);
    const huge = 500 * 1024 * MiB;
    const part = partSizeFor(huge, 16);
    assert.ok(Math.ceil(huge / part) <= 10_000);
    assert.equal(part % MiB, 0);
    assert.ok(Math.ceil(partSizeFor(5 * 1024 * 1024 * MiB, 5) * 10_000) >= 5 * 1024 * 1024 * MiB);
  });

  void test('a streamed download matches what was uploaded when using SDK default checksums on a multipart object', async () => {
    const store = createS3ObjectStore(s3ConfigFor(s3, { checksums: 'when-supported', queueSize: 4 }));
    try {
      const path = join(dir, 'default-checksums.bin');
      const sha256 = await writeRandomFile(path, 11 * MiB);
      await store.putFile(`${base}/crc/f`, path);
      assert.deepEqual(await sha256OfStream(await store.get(`${base}/crc/f`)), { sha256, bytes: 11 * MiB });
    } finally {
      store.close();
    }
  });
});
