import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { quiesceIntervals } from '../../src/sim/audit.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { startFleetHarness, waitFor, type FleetHarness } from '../support/fleet.ts';
import { fleetCliInProcess } from '../support/fleet-cli.ts';

interface RunDoc {
  backups: { target: string; id: string; manifestKey: string; uploadAttempts: number; artifacts: { key: string; bytes: number; sha256: string }[] }[];
  failures: unknown[];
}

/**
 * Invariant 4: the S3 endpoint is down when the upload starts and comes back later (a new
 * server on the same port, its bucket recreated). The upload is retried from the spool and
 * the appliance is quiesced exactly once.
 */
void describe('S3 down for a while, then back', () => {
  let s3: EmbeddedS3 | undefined;
  let port: number;
  let bucket: string;
  let h: FleetHarness;

  before(async () => {
    s3 = await startEmbeddedS3({ bucket: `outage-${process.pid}` });
    port = Number(new URL(s3.endpoint).port);
    bucket = s3.bucket;
    h = await startFleetHarness({ count: 1, workers: 1, s3Endpoint: s3.endpoint, s3Bucket: bucket, tune: { worker: { uploadAttempts: 20, backoffSeconds: 0.3 } } });
  });
  after(async () => {
    await h?.close();
    await s3?.stop();
  });

  void test('the upload retries from the spool; one quiesce', async () => {
    // A good backup first: the worker's S3 preflight passes and is remembered (60 s), so the
    // outage below meets the upload, not the preflight that guards the stop.
    const warm = await fleetCliInProcess(h, ['run', '--target', 'vc01', '--wait', '--json']);
    assert.equal(warm.code, 0, warm.stderr.slice(-3000));
    await s3?.stop();
    s3 = undefined;
    const t0 = Date.now();
    const run = h.cli(['run', '--target', 'vc01', '--wait', '--json']);

    // The dump is done and the services are back; the upload keeps failing.
    await waitFor('vc01 quiesced and back', async () => quiesceIntervals(await h.audit()).some((i) => i.appliance === 'vc01' && i.from >= t0 && i.to !== null));
    await waitFor('two upload retries', async () => Number(await h.redis.hget(`${h.prefix}:target:vc01`, 'uploadRetries')) >= 2);

    s3 = await startEmbeddedS3({ port, bucket });
    const res = await run;
    assert.equal(res.code, 0, res.stderr.slice(-3000));
    const doc = JSON.parse(res.stdout) as RunDoc;
    const b = doc.backups[0];
    assert.ok(b);
    assert.ok(b.uploadAttempts >= 3, `uploadAttempts ${b.uploadAttempts}`);

    const intervals = quiesceIntervals(await h.audit()).filter((i) => i.appliance === 'vc01' && i.from >= t0);
    assert.equal(intervals.length, 1, `vc01 quiesced ${intervals.length} times`);
    assert.ok(await h.fleet.appliances[0]?.servicesRunning());

    // What is in the (new) bucket is the complete, verified backup.
    const store = createS3ObjectStore(h.config().s3);
    try {
      assert.ok(await store.head(b.manifestKey));
      for (const a of b.artifacts) {
        const body = await store.getBytes(a.key);
        assert.equal(body.length, a.bytes);
        assert.equal(createHash('sha256').update(body).digest('hex'), a.sha256);
      }
    } finally {
      store.close();
    }
  });
});

/**
 * Invariant 4 across a worker's death: the worker that dumped dies while its upload is failing.
 * Another worker on the same host takes the job over and uploads from the spool: the appliance
 * is still quiesced exactly once.
 */
void describe('worker killed while its upload is failing', () => {
  let s3: EmbeddedS3 | undefined;
  let port: number;
  let bucket: string;
  let h: FleetHarness;

  before(async () => {
    s3 = await startEmbeddedS3({ bucket: `outage-kill-${process.pid}` });
    port = Number(new URL(s3.endpoint).port);
    bucket = s3.bucket;
    h = await startFleetHarness({ count: 1, workers: 1, s3Endpoint: s3.endpoint, s3Bucket: bucket, tune: { worker: { uploadAttempts: 100, backoffSeconds: 0.3 } } });
  });
  after(async () => {
    await h?.close();
    await s3?.stop();
  });

  void test('another worker uploads from the spool; one quiesce', async () => {
    // The first worker backs up once (its S3 preflight passes and is remembered for 60 s, so the
    // outage meets the upload); the second starts after, and only uploads from the spool, which
    // needs no preflight since it stops nothing.
    const warm = await fleetCliInProcess(h, ['run', '--target', 'vc01', '--wait', '--json']);
    assert.equal(warm.code, 0, warm.stderr.slice(-3000));
    const second = h.startWorker();
    await waitFor('the second worker to start', () => second.log().includes('"worker started"'), 60_000);
    await s3?.stop();
    s3 = undefined;
    const t0 = Date.now();
    const run = h.cli(['run', '--target', 'vc01', '--wait', '--json']);
    await waitFor('vc01 quiesced and back', async () => quiesceIntervals(await h.audit()).some((i) => i.appliance === 'vc01' && i.from >= t0 && i.to !== null));
    await waitFor('an upload retry', async () => Number(await h.redis.hget(`${h.prefix}:target:vc01`, 'uploadRetries')) >= 1);

    // The target lock names the worker running the backup (host:pid:…|backup|…).
    const lock = await h.redis.get(`${h.prefix}:lock:target:vc01`);
    const pid = Number(lock?.split('|')[0]?.split(':')[1]);
    const uploader = h.workers.find((w) => w.pid === pid);
    assert.ok(uploader, `no worker of ours holds the lock (${lock})`);
    await h.stopWorker(uploader, 'SIGKILL');
    const survivor = h.workers.find((w) => w !== uploader);
    assert.ok(survivor);

    s3 = await startEmbeddedS3({ port, bucket });
    const res = await run;
    assert.equal(res.code, 0, res.stderr.slice(-3000));
    assert.match(survivor.log(), /uploading from the spool of an earlier attempt/);
    const intervals = quiesceIntervals(await h.audit()).filter((i) => i.appliance === 'vc01' && i.from >= t0);
    assert.equal(intervals.length, 1, `vc01 quiesced ${intervals.length} times`);
    assert.ok(await h.fleet.appliances[0]?.servicesRunning());
  });
});
