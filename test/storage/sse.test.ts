import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { manifestKey, parseManifest, type Manifest } from '../../src/backup/manifest.ts';
import { runBackup } from '../../src/backup/run-backup.ts';
import { parseConfig } from '../../src/config/load.ts';
import { createExecutor } from '../../src/executors/index.ts';
import { silentLogger } from '../../src/log.ts';
import { createSimAppliance, type SimAppliance } from '../../src/sim/appliance.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { rejectsWithCode } from '../support/poll.ts';
import { s3ConfigFor } from '../support/s3.ts';
import { writeRandomFile } from './contract.ts';

interface Recorded {
  readonly method: string;
  readonly key: string;
  readonly params: string[];
  readonly headers: IncomingHttpHeaders;
}

const kmsKeyId = 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';

/**
 * s3.serverSideEncryption / kmsKeyId: the embedded endpoint ignores SSE headers, so a proxy in
 * front of it records what the store sends: the SSE headers on every PutObject and
 * CreateMultipartUpload of a backup (and none on the parts, where S3 refuses them). The manifest
 * records the setting and strict parsing accepts it, and refuses a malformed one.
 */
void describe('server-side encryption settings', () => {
  let dir: string;
  let s3: EmbeddedS3;
  let proxy: Server;
  let endpoint: string;
  let sim: SimAppliance;
  const requests: Recorded[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sse-test-'));
    s3 = await startEmbeddedS3({ bucket: `sse-${randomBytes(3).toString('hex')}` });
    const upstream = new URL(s3.endpoint);
    proxy = createServer((req, res) => {
      const url = new URL(req.url ?? '/', s3.endpoint);
      requests.push({ method: req.method ?? '?', key: decodeURIComponent(url.pathname.slice(`/${s3.bucket}/`.length)), params: [...url.searchParams.keys()], headers: req.headers });
      const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      forward.on('error', (err) => res.destroy(err));
      req.pipe(forward);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const address = proxy.address();
    endpoint = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    sim = await createSimAppliance({ name: `sse-${randomBytes(3).toString('hex')}`, baseDir: join(dir, 'appliances'), auditLog: join(dir, 'audit.jsonl') });
  });
  after(async () => {
    await sim?.destroy();
    await new Promise<void>((resolve) => proxy?.close(() => resolve()));
    await s3?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const writes = (): Recorded[] => requests.filter((r) => r.method === 'PUT' || (r.method === 'POST' && r.params.includes('uploads')));
  const isPart = (r: Recorded): boolean => r.params.includes('partNumber');

  void test('SSE-KMS: a backup sends the headers on every object write and records them in its manifest', async () => {
    const config = parseConfig(
      {
        s3: { bucket: s3.bucket, prefix: 'vcsa', endpoint, forcePathStyle: true, checksums: 'when-required', partSizeMiB: 5, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, serverSideEncryption: 'aws:kms', kmsKeyId },
        spool: { dir: join(dir, 'spool'), minFreeMiB: 0 },
        retention: { afterBackup: false },
        targets: [{ name: 'vc01', profile: 'vcsa-5.5', executor: { type: 'local' }, variables: sim.variables }],
      },
      { env: {} },
    );
    const target = config.targets[0];
    assert.ok(target);
    const store = createS3ObjectStore(config.s3, silentLogger);
    const executor = createExecutor(target.executor, silentLogger);
    requests.length = 0;
    try {
      const outcome = await runBackup({ config, target, executor, store, logger: silentLogger });
      assert.deepEqual(outcome.manifest.serverSideEncryption, { algorithm: 'aws:kms', kmsKeyId });
      const stored = parseManifest(JSON.parse((await store.getBytes(outcome.manifestKey)).toString('utf8')), outcome.manifestKey);
      assert.deepEqual(stored.serverSideEncryption, { algorithm: 'aws:kms', kmsKeyId });

      // A file big enough for a multipart upload, through the same store.
      const big = join(dir, 'big.bin');
      await writeRandomFile(big, 6 * 1024 * 1024 + 17);
      await store.putFile('vcsa/sse-multipart/big.bin', big);

      const objectWrites = writes().filter((r) => !isPart(r));
      const keys = new Set(objectWrites.map((r) => r.key));
      for (const a of outcome.manifest.artifacts) assert.ok(keys.has(a.key), `${a.key} written`);
      assert.ok(keys.has(outcome.manifestKey));
      assert.ok(objectWrites.some((r) => r.method === 'POST' && r.key === 'vcsa/sse-multipart/big.bin'), 'a CreateMultipartUpload was made');
      for (const r of objectWrites) {
        assert.equal(r.headers['x-amz-server-side-encryption'], 'aws:kms', `${r.method} ${r.key}`);
        assert.equal(r.headers['x-amz-server-side-encryption-aws-kms-key-id'], kmsKeyId, `${r.method} ${r.key}`);
      }
      const parts = writes().filter(isPart);
      assert.ok(parts.length >= 2);
      for (const r of parts) assert.equal(r.headers['x-amz-server-side-encryption'], undefined, 'S3 refuses SSE headers on UploadPart');
    } finally {
      await executor.close();
      store.close();
    }
  });

  void test('SSE-S3: AES256 without a key id; none configured: no header and no manifest field', async () => {
    for (const sse of [{ serverSideEncryption: 'AES256' as const }, {}]) {
      const store = createS3ObjectStore(s3ConfigFor({ ...s3, endpoint }, sse), silentLogger);
      requests.length = 0;
      try {
        await store.putBytes('vcsa/sse-small/x.json', Buffer.from('{}'));
        const [put] = writes();
        assert.ok(put);
        assert.equal(put.headers['x-amz-server-side-encryption'], sse.serverSideEncryption);
        assert.equal(put.headers['x-amz-server-side-encryption-aws-kms-key-id'], undefined);
      } finally {
        store.close();
      }
    }
  });

  void test('manifest parsing: serverSideEncryption is optional and checked strictly', async () => {
    const key = manifestKey('vcsa', 'vc01', '20261126T020000.123Z');
    const base = {
      format: 1,
      tool: 'vcsa-backup test',
      id: '20261126T020000.123Z',
      target: 'vc01',
      profile: 'vcsa-5.5',
      appliance: 'local',
      createdAt: '2026-11-26T02:00:00.123Z',
      completedAt: '2026-11-26T02:01:00.000Z',
      quiesce: null,
      timings: {},
      artifacts: [{ name: 'vcdb', file: 'postgres.sql.gz', key: 'vcsa/vc01/20261126T020000.123Z/postgres.sql.gz', bytes: 10, sha256: 'a'.repeat(64), rawBytes: 20, rawSha256: 'b'.repeat(64), compression: 'gzip', encryption: null, format: 'plain-sql' }],
    } satisfies Omit<Manifest, 'format'> & { format: number };
    assert.equal(parseManifest(base, key).serverSideEncryption, undefined);
    assert.deepEqual(parseManifest({ ...base, serverSideEncryption: { algorithm: 'AES256' } }, key).serverSideEncryption, { algorithm: 'AES256' });
    assert.deepEqual(parseManifest({ ...base, serverSideEncryption: { algorithm: 'aws:kms', kmsKeyId } }, key).serverSideEncryption, { algorithm: 'aws:kms', kmsKeyId });
    const refused = async (sse: unknown, field: string): Promise<void> => {
      const err = await rejectsWithCode(Promise.resolve().then(() => parseManifest({ ...base, serverSideEncryption: sse }, key)), 'MANIFEST_INVALID');
      assert.equal((err.details as { field?: string } | undefined)?.field, field, err.message);
    };
    await refused('AES256', 'serverSideEncryption');
    await refused({ algorithm: 'rot13' }, 'serverSideEncryption.algorithm');
    await refused({ algorithm: 'AES256', kmsKeyId }, 'serverSideEncryption.kmsKeyId');
    await refused({ algorithm: 'aws:kms', kmsKeyId: 42 }, 'serverSideEncryption.kmsKeyId');
  });
});
