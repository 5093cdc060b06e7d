/**
 * The native slot counts the appliance's job (real Redis, the simulated appliance over HTTPS):
 * an appliance that stops answering while its job runs cannot be told to cancel, so the worker's
 * job fails but its slot is not given back — it is abandoned, with why, and the job's id stays
 * recorded. Once the appliance answers again, the native watchdog cancels that job, sees it end,
 * and only then frees the slot.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { parseConfig, type Config } from '../../src/config/load.ts';
import type { LeaseEntry } from '../../src/locks/fleet-lease.ts';
import { createNativeLease, nativeJobsKey, processNativeJob, type NativeJobRecord } from '../../src/native/native-job.ts';
import { NativeWatchdog } from '../../src/native/native-watchdog.ts';
import type { NativeAppliance } from '../../src/sim/native-appliance.ts';
import { loopbackNativeSection, nativeTargets, startNativeAppliances } from '../../src/sim/native-fleet.ts';
import { FleetState } from '../../src/state/fleet-state.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { removeFleetKeys } from '../../workers/queues.ts';
import { rejectsWithCode, waitFor } from '../support/poll.ts';
import { s3ConfigFor } from '../support/s3.ts';

const prefix = `test-native-slot-${randomBytes(4).toString('hex')}`;
const logger = pino({ level: 'silent' });

void describe('the native slot and an appliance that stops answering mid-job', () => {
  let dir: string;
  let s3: EmbeddedS3;
  let redis: Redis;
  let appliance: NativeAppliance;
  let config: Config;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'native-slot-test-'));
    s3 = await startEmbeddedS3();
    redis = new Redis('redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 });
    [appliance] = (await startNativeAppliances(1, { archiveBytes: 32 * 1024, chunkBytes: 16 * 1024 })) as [NativeAppliance];
    config = parseConfig({
      redis: { url: 'redis://127.0.0.1:6379', prefix },
      s3: { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, forcePathStyle: true, checksums: 'when-required', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      spool: { dir: join(dir, 'spool'), minFreeMiB: 1 },
      native: loopbackNativeSection({ pollSeconds: 1, leaseSeconds: 2, maxConcurrent: 1 }),
      worker: { attempts: 1 },
      targets: await nativeTargets([appliance], join(dir, 'secrets')),
    });
  });
  after(async () => {
    await appliance?.stop();
    if (redis) {
      await removeFleetKeys(redis, prefix).catch(() => undefined);
      redis.disconnect();
    }
    await s3?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const holders = async (): Promise<LeaseEntry[]> => Object.values(await redis.hgetall(`${prefix}:native:lease:holders`)).map((raw) => JSON.parse(raw) as LeaseEntry);

  void test('the failed job abandons its slot (not released); the watchdog cancels the job once the appliance answers, then frees it', async () => {
    const store = createS3ObjectStore(s3ConfigFor(s3), logger);
    const nativeLease = createNativeLease(redis, config, 'worker-a', logger);
    const deps = { config, redis, state: new FleetState(redis, prefix), store, logger, nativeLease };
    appliance.setFault({ kind: 'stuck' });
    const job = processNativeJob(
      deps,
      { id: 'backup.vcn01.r1', data: { target: appliance.name, runId: 'r1', trigger: 'run' }, attempt: 1, maxAttempts: 1, updateData: () => Promise.resolve(), reportProgress: () => undefined },
      new AbortController().signal,
    );
    try {
      const stuck = await waitFor('the appliance job to hang INPROGRESS', () => appliance.jobs.find((j) => j.state === 'INPROGRESS' && j.files.length >= 1), 30_000, 20);
      await appliance.setReachable(false);
      await rejectsWithCode(job, 'NATIVE_API_UNREACHABLE');

      // The job may still run on the appliance: its slot is kept, marked abandoned, its id kept.
      const [entry] = await holders();
      assert.equal(entry?.target, appliance.name);
      assert.match(entry?.abandoned?.reason ?? '', new RegExp(`backup job ${stuck.id} could not be confirmed ended`));
      const record = JSON.parse((await redis.hget(nativeJobsKey(prefix), appliance.name)) ?? '{}') as NativeJobRecord;
      assert.equal(record.applianceJobId, stuck.id);
      assert.equal(record.token, entry?.token);
      assert.equal(stuck.state, 'INPROGRESS');
      // No second native job gets the slot meanwhile (native.maxConcurrent: 1).
      assert.equal(await createNativeLease(redis, config, 'worker-b', logger).tryAcquire('other'), null);

      await appliance.setReachable(true);
      const watchdog = new NativeWatchdog({ config, lease: createNativeLease(redis, config, 'rescuer', logger), redis, logger, rescuerId: 'rescuer' });
      assert.deepEqual(await watchdog.sweep(), [appliance.name]);
      assert.equal(stuck.cancelled, true);
      assert.equal(stuck.state, 'FAILED', 'the slot was freed only after the appliance reported the job ended');
      assert.deepEqual(await holders(), []);
      assert.equal(await redis.hget(nativeJobsKey(prefix), appliance.name), null);
    } finally {
      appliance.setFault({ kind: 'none' });
      await appliance.setReachable(true);
      await job.catch(() => undefined);
      store.close();
    }
  });
});
