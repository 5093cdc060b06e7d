import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, beforeEach, describe, test } from 'node:test';
import { Secret } from '../../src/config/secret.ts';
import { silentLogger } from '../../src/log.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { forgetPreflights, preflightS3 } from '../../src/storage/preflight.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { RecordingStore } from '../support/recording-store.ts';

void describe('S3 preflight', () => {
  let s3: EmbeddedS3;
  let store: ObjectStore;

  before(async () => {
    s3 = await startEmbeddedS3({ bucket: `preflight-${randomUUID().slice(0, 8)}` });
    store = createS3ObjectStore({
      bucket: s3.bucket,
      prefix: 'pf',
      region: s3.region,
      endpoint: s3.endpoint,
      forcePathStyle: true,
      accessKeyId: new Secret(s3.accessKeyId, 'test'),
      secretAccessKey: new Secret(s3.secretAccessKey, 'test'),
      checksums: 'when-required',
      partSizeMiB: 8,
      queueSize: 2,
      verify: 'head',
      createBucket: false,
      deletes: true,
    });
  });
  after(async () => {
    store.close();
    await s3.stop();
  });
  beforeEach(() => forgetPreflights());

  void test('writes, reads back and deletes one object under the prefix, then remembers the success', async () => {
    const recording = new RecordingStore(store);
    await preflightS3(recording, { prefix: 'pf', deletes: true }, silentLogger);
    assert.deepEqual(recording.log.map((r) => r.op), ['putBytes', 'deleteMany']);
    assert.match(recording.log[0]!.key, /^pf\/\.vcsa-backup-preflight\/[0-9a-f]{16}$/);
    assert.equal(recording.log[1]!.key, recording.log[0]!.key);
    await preflightS3(recording, { prefix: 'pf', deletes: true }, silentLogger);
    assert.equal(recording.log.length, 2, 'a second preflight within the cache time writes nothing');
  });

  void test('with s3.deletes: false, one fixed probe object is overwritten and never deleted', async () => {
    const recording = new RecordingStore(store);
    await preflightS3(recording, { prefix: 'pf', deletes: false }, silentLogger);
    forgetPreflights();
    await preflightS3(recording, { prefix: 'pf', deletes: false }, silentLogger);
    assert.deepEqual(recording.log, [
      { op: 'putBytes', key: 'pf/.vcsa-backup-preflight/probe' },
      { op: 'putBytes', key: 'pf/.vcsa-backup-preflight/probe' },
    ]);
  });
});
