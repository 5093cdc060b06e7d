import assert from 'node:assert/strict';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { spoolHost } from '../../src/backup/spool.ts';
import { createExecutor } from '../../src/executors/index.ts';
import { processBackupJob, type BackupJobData, type BackupJobDeps } from '../../src/fleet/backup-job.ts';
import { FleetLease } from '../../src/locks/fleet-lease.ts';
import { silentLogger } from '../../src/log.ts';
import { allServicesRunningAtEnd, maxConcurrentQuiesced, quiesceIntervals } from '../../src/sim/audit.ts';
import { FleetState } from '../../src/state/fleet-state.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { slowDumpFleet, startFleetHarness, type FleetHarness } from '../support/fleet.ts';
import { fleetCliInProcess } from '../support/fleet-cli.ts';

/**
 * Invariant 4's other half: only a lost spool sends an appliance back for a new dump, and the
 * reason is recorded; a spool gone because its backup was committed is that job's result. The job is run in this process (the worker's code path minus BullMQ) with
 * job data that points at a spool that is gone, or on another host.
 */
void describe('a lost spool means a fresh dump, with the reason recorded', () => {
  let h: FleetHarness;
  before(async () => {
    h = await startFleetHarness({ count: 1, workers: 0 });
  });
  after(async () => {
    await h?.close();
  });

  async function runJob(data: BackupJobData): Promise<{ dumpedAgainBecause?: string; id: string }> {
    const config = h.config();
    const store = createS3ObjectStore(config.s3, silentLogger);
    const deps: BackupJobDeps = {
      config,
      redis: h.redis,
      lease: new FleetLease(h.redis, { prefix: config.redis.prefix, maxConcurrent: 1, leaseMs: 5000, logger: silentLogger }),
      state: new FleetState(h.redis, config.redis.prefix),
      store,
      makeExecutor: (t) => createExecutor(t.executor, silentLogger),
      logger: silentLogger,
    };
    let current = data;
    try {
      return await processBackupJob(
        deps,
        { id: `test-${Date.now()}`, data, attempt: 2, maxAttempts: 3, updateData: (d) => Promise.resolve(void (current = d)), reportProgress: () => undefined },
        new AbortController().signal,
      );
    } finally {
      store.close();
      assert.ok(current.spool, 'the job records its new spool');
    }
  }

  void test('spool directory gone on this host', async () => {
    const t0 = Date.now();
    const result = await runJob({ target: 'vc01', runId: 'r1', trigger: 'run', spool: { host: spoolHost(), dir: join(h.dir, 'spool-that-vanished'), id: '20260101T000000.000Z' } });
    assert.match(result.dumpedAgainBecause ?? '', /gone/);
    const state = await new FleetState(h.redis, h.prefix).get('vc01');
    assert.equal(state.lastRequeue?.reason, result.dumpedAgainBecause);
    assert.equal(state.lastSuccess?.id, result.id);
    const since = (await h.audit()).filter((e) => e.ts >= t0);
    assert.equal(quiesceIntervals(since).length, 1, 'dumped once more, no more');
  });

  void test('a newer good backup removes the spool a failed-for-good backup left behind', async () => {
    const root = h.config().spool.dir;
    const old = join(root, 'vc01', '20200101T000000.000Z');
    await mkdir(old, { recursive: true });
    await writeFile(join(old, 'spool.json'), '{}');
    await writeFile(join(old, 'postgres.sql'), 'an old dump nobody uploaded');
    const result = await runJob({ target: 'vc01', runId: 'r3', trigger: 'run' });
    assert.ok(result.id > '20200101T000000.000Z');
    await assert.rejects(stat(old), { code: 'ENOENT' });
  });

  void test('an attempt that committed and died before the queue heard of it: the retry reports that backup, and quiesces nothing', async () => {
    const first = await runJob({ target: 'vc01', runId: 'r4', trigger: 'run' });
    const t0 = Date.now();
    // The retry of the same job: its data still names the first attempt's spool, which the
    // commit removed.
    const retry = await runJob({ target: 'vc01', runId: 'r4', trigger: 'run', spool: { host: spoolHost(), dir: join(h.config().spool.dir, 'vc01', first.id), id: first.id } });
    assert.equal(retry.id, first.id, 'the committed backup is the result');
    assert.equal(retry.dumpedAgainBecause, undefined);
    assert.equal(quiesceIntervals((await h.audit()).filter((e) => e.ts >= t0)).length, 0, 'nothing stopped again');
    const manifests: string[] = [];
    const store = createS3ObjectStore(h.config().s3, silentLogger);
    try {
      for await (const o of store.list('vcsa/vc01/')) if (o.key.endsWith('/manifest.json')) manifests.push(o.key);
    } finally {
      store.close();
    }
    assert.equal(manifests.filter((k) => k.includes(first.id)).length, 1);
  });

  void test('spool on another host', async () => {
    const result = await runJob({ target: 'vc01', runId: 'r2', trigger: 'run', spool: { host: 'some-other-host', dir: '/var/spool/vcsa-backup/vc01/x', id: '20260101T000000.000Z' } });
    assert.match(result.dumpedAgainBecause ?? '', /on host some-other-host/);
  });
});

/**
 * Invariant 1 with quiesce.maxConcurrent 2: with slow dumps and enough workers, two appliances
 * are quiesced together (the limit is used), never three.
 */
void describe('quiesce.maxConcurrent 2', () => {
  let h: FleetHarness;
  const slow = slowDumpFleet(1);
  before(async () => {
    h = await startFleetHarness({
      count: 4,
      workers: 2,
      tune: { quiesce: { maxConcurrent: 2 } },
      edit: slow.edit,
    });
    await slow.install(h.dir);
  });
  after(async () => {
    await h?.close();
  });

  void test('two at a time, never three', async () => {
    const res = await fleetCliInProcess(h, ['run', '--wait', '--json']);
    assert.equal(res.code, 0, res.stderr);
    const audit = await h.audit();
    const intervals = quiesceIntervals(audit);
    assert.equal(intervals.length, 4);
    assert.equal(maxConcurrentQuiesced(intervals), 2);
    assert.ok(allServicesRunningAtEnd(audit));
  });
});

/**
 * quiesce.startServicesAfter: upload through the queue: the fleet slot is held through the
 * upload (each manifest's quiesce window covers its upload), still one appliance at a time.
 */
void describe('startServicesAfter: upload, through workers', () => {
  let h: FleetHarness;
  before(async () => {
    h = await startFleetHarness({ count: 2, workers: 2, tune: { quiesce: { startServicesAfter: 'upload' } } });
  });
  after(async () => {
    await h?.close();
  });

  void test('uploads inside the quiesce window, never two appliances at once', async () => {
    const res = await fleetCliInProcess(h, ['run', '--wait', '--json']);
    assert.equal(res.code, 0, res.stderr);
    const doc = JSON.parse(res.stdout) as { backups: { manifestKey: string }[] };
    assert.equal(doc.backups.length, 2);
    const store = createS3ObjectStore(h.config().s3, silentLogger);
    try {
      for (const b of doc.backups) {
        const m = JSON.parse((await store.getBytes(b.manifestKey)).toString()) as { quiesce: { ms: number }; timings: Record<string, number> };
        assert.ok(m.quiesce.ms >= (m.timings['uploadMs'] ?? Infinity), `${b.manifestKey}: quiesce ${m.quiesce.ms} ms < upload ${m.timings['uploadMs']} ms`);
      }
    } finally {
      store.close();
    }
    const intervals = quiesceIntervals(await h.audit());
    assert.equal(maxConcurrentQuiesced(intervals), 1);
    assert.ok(allServicesRunningAtEnd(await h.audit()));
  });
});
