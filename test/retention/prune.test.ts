import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { artifactKey, backupIdFor, manifestFormat, manifestKey, type Manifest } from '../../src/backup/manifest.ts';
import { listBackups } from '../../src/catalog/catalog.ts';
import { BackupError } from '../../src/errors.ts';
import { sha256Of } from '../../src/hashing.ts';
import { silentLogger } from '../../src/log.ts';
import { pruneTarget } from '../../src/retention/prune.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { rawS3Client, s3ConfigFor } from '../support/s3.ts';
import { startSwiftS3 } from '../support/swift-s3.ts';

const day = 24 * 3600 * 1000;

/** A complete backup as the upload step writes it: artifact first, manifest last. */
async function putBackup(store: ObjectStore, prefix: string, target: string, at: Date, bytes = 1000): Promise<string> {
  const id = backupIdFor(at);
  const body = Buffer.alloc(bytes, 7);
  const key = artifactKey(prefix, target, id, 'postgres.sql.gz');
  const put = await store.putBytes(key, body);
  const manifest: Manifest = {
    format: manifestFormat,
    tool: 'test',
    id,
    target,
    profile: 'postgres',
    appliance: 'test',
    createdAt: at.toISOString(),
    completedAt: at.toISOString(),
    quiesce: null,
    timings: {},
    artifacts: [{ name: 'db', file: 'postgres.sql.gz', key, bytes: put.bytes, sha256: put.sha256, rawBytes: bytes, rawSha256: sha256Of(body), compression: 'gzip', encryption: null, format: 'plain-sql' }],
  };
  await store.putBytes(manifestKey(prefix, target, id), Buffer.from(JSON.stringify(manifest)));
  return id;
}

async function keysOf(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of store.list(prefix)) keys.push(o.key);
  return keys;
}

void describe('prune against an S3 endpoint', () => {
  let s3: EmbeddedS3;
  let store: ObjectStore;

  before(async () => {
    s3 = await startEmbeddedS3({ bucket: `prune-${randomUUID().slice(0, 8)}` });
    store = createS3ObjectStore(s3ConfigFor(s3), silentLogger);
  });
  after(async () => {
    store?.close();
    await s3?.stop();
  });

  const keysUnder = (prefix: string): Promise<string[]> => keysOf(store, prefix);

  void test('deletes what the policy expires, manifest and artifacts; keeps the rest; dry run deletes nothing', async () => {
    const prefix = `p-${randomUUID().slice(0, 8)}`;
    const now = new Date();
    const ids = [];
    for (const daysAgo of [0.1, 1, 2, 3, 4]) ids.push(await putBackup(store, prefix, 'vc01', new Date(now.getTime() - daysAgo * day)));
    // Another target's backups are never touched.
    const other = await putBackup(store, prefix, 'vc02', new Date(now.getTime() - 10 * day));

    const dry = await pruneTarget({ store, prefix, target: 'vc01', policy: { keepLast: 2 }, logger: silentLogger, dryRun: true });
    assert.deepEqual(dry.deleted.map((d) => d.id), [ids[2], ids[3], ids[4]]);
    assert.equal((await listBackups(store, prefix, 'vc01')).length, 5, 'dry run deleted nothing');

    const result = await pruneTarget({ store, prefix, target: 'vc01', policy: { keepLast: 2 }, logger: silentLogger });
    assert.deepEqual(result.kept.map((k) => k.id), [ids[0], ids[1]]);
    assert.deepEqual(result.deleted.map((d) => d.id), [ids[2], ids[3], ids[4]]);
    assert.deepEqual((await listBackups(store, prefix, 'vc01')).map((e) => e.id), [ids[0], ids[1]]);
    // Nothing of a deleted backup is left behind.
    for (const id of [ids[2], ids[3], ids[4]]) assert.deepEqual(await keysUnder(`${prefix}/vc01/${id}/`), []);
    assert.deepEqual((await listBackups(store, prefix, 'vc02')).map((e) => e.id), [other]);
  });

  void test('refuses a policy that would delete every backup, and deletes nothing', async () => {
    const prefix = `p-${randomUUID().slice(0, 8)}`;
    const now = new Date();
    await putBackup(store, prefix, 'vc01', new Date(now.getTime() - 40 * day));
    await putBackup(store, prefix, 'vc01', new Date(now.getTime() - 50 * day));
    await assert.rejects(
      pruneTarget({ store, prefix, target: 'vc01', policy: { maxAgeDays: 30 }, logger: silentLogger }),
      (e: unknown) => e instanceof BackupError && e.code === 'RETENTION_WOULD_DELETE_ALL' && /check your configuration/i.test(e.message),
    );
    assert.equal((await listBackups(store, prefix, 'vc01')).length, 2);
  });

  void test('skips pruning when the newest backup is far smaller than the one before', async () => {
    const prefix = `p-${randomUUID().slice(0, 8)}`;
    const now = new Date();
    await putBackup(store, prefix, 'vc01', new Date(now.getTime() - 3 * day), 5000);
    await putBackup(store, prefix, 'vc01', new Date(now.getTime() - 2 * day), 5000);
    await putBackup(store, prefix, 'vc01', new Date(now.getTime() - 1 * day), 100);
    const result = await pruneTarget({ store, prefix, target: 'vc01', policy: { keepLast: 1, minSizeRatio: 0.5 }, logger: silentLogger });
    assert.equal(result.deleted.length, 0);
    assert.match(result.skipped ?? '', /smaller than/);
    assert.equal((await listBackups(store, prefix, 'vc01')).length, 3);
  });

  void test('a manifest deleted first leaves artifacts that are no longer listed as a backup', async () => {
    const prefix = `p-${randomUUID().slice(0, 8)}`;
    const id = await putBackup(store, prefix, 'vc01', new Date(Date.now() - 2 * day));
    await putBackup(store, prefix, 'vc01', new Date());
    // What an interrupted prune leaves: the manifest is gone, the artifact is still there.
    await store.deleteMany([manifestKey(prefix, 'vc01', id)]);
    assert.equal((await listBackups(store, prefix, 'vc01')).some((e) => e.id === id), false);
    const result = await pruneTarget({ store, prefix, target: 'vc01', policy: { keepLast: 5 }, logger: silentLogger, now: new Date(Date.now() + day + 60_000) });
    assert.deepEqual(result.orphans.map((o) => o.id), [id]);
    assert.deepEqual(await keysUnder(`${prefix}/vc01/${id}/`), []);
  });
});

void describe('prune against a server that lists multipart uploads (Swift s3api)', () => {
  let swift: EmbeddedS3;
  let store: ObjectStore;

  before(async () => {
    swift = await startSwiftS3({ bucket: `prune-${randomUUID().slice(0, 8)}` });
    store = createS3ObjectStore(s3ConfigFor(swift), silentLogger);
  });
  after(async () => {
    store?.close();
    await swift?.stop();
  });

  void test('debris without a manifest and incomplete uploads are removed once older than a day, not before, and only the target\'s', async () => {
    const prefix = `p-${randomUUID().slice(0, 8)}`;
    const good = await putBackup(store, prefix, 'vc01', new Date());
    const crashed = '20260101T000000.000Z';
    const debris = `${prefix}/vc01/${crashed}/postgres.sql.gz`;
    await store.putBytes(debris, Buffer.from('half an upload'));
    // A worker that died mid-upload leaves a multipart upload open on the server.
    const raw = rawS3Client(swift);
    const incomplete = async (target: string): Promise<string[]> => {
      const page = await raw.send(new ListMultipartUploadsCommand({ Bucket: swift.bucket, Prefix: `${prefix}/${target}/` }));
      return (page.Uploads ?? []).map((u) => u.Key ?? '?');
    };
    try {
      for (const target of ['vc01', 'vc02']) {
        await raw.send(new CreateMultipartUploadCommand({ Bucket: swift.bucket, Key: `${prefix}/${target}/${crashed}/inventory_services.DB.gz` }));
      }

      const fresh = await pruneTarget({ store, prefix, target: 'vc01', policy: { keepLast: 5 }, logger: silentLogger });
      assert.deepEqual(fresh.orphans, []);
      assert.equal(fresh.abortedUploads, 0);
      assert.ok((await keysOf(store, `${prefix}/`)).includes(debris), 'young debris may be an upload in progress: kept');
      assert.deepEqual(await incomplete('vc01'), [`${prefix}/vc01/${crashed}/inventory_services.DB.gz`], 'a young upload may be in progress: kept');

      // A day later by prune's clock: the object's LastModified and the upload's start are both older than a day.
      const later = await pruneTarget({ store, prefix, target: 'vc01', policy: { keepLast: 5 }, logger: silentLogger, now: new Date(Date.now() + day + 60_000) });
      assert.deepEqual(later.orphans.map((o) => o.id), [crashed]);
      assert.equal(later.abortedUploads, 1);
      assert.equal((await keysOf(store, `${prefix}/`)).includes(debris), false);
      assert.deepEqual(await incomplete('vc01'), []);
      assert.deepEqual(await incomplete('vc02'), [`${prefix}/vc02/${crashed}/inventory_services.DB.gz`], 'another target\'s upload is not touched');
      assert.deepEqual((await listBackups(store, prefix, 'vc01')).map((e) => e.id), [good]);
    } finally {
      raw.destroy();
    }
  });
});
