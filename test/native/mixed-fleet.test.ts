/**
 * Issue 12 through real worker processes: one run backs up a fleet mixing simulated VCSA 5.5
 * appliances (services stopped, local executor) and simulated vCenter 8.0 appliances (their own
 * file-based backup, pushed over SFTP to each job's receiver). Each pool keeps its limit:
 * `quiesce.maxConcurrent` over the 5.5 appliances' quiesce windows (the audit log), and
 * `native.maxConcurrent` over the 8.0 appliances' backup jobs (the simulator's own job records:
 * a native job's window is the appliance's job, from start to its end). Every appliance ends
 * with a verified backup. A worker SIGKILLed while an appliance's job runs (stuck INPROGRESS)
 * leaves that job to the native watchdog of another worker, which cancels it; the appliance is
 * not left stuck and the retried job commits a fresh backup. No API password, session id,
 * receiver (location) password or backup password is anywhere in Redis, the workers' and
 * commands' output, S3 object metadata or the manifests.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Manifest } from '../../src/backup/manifest.ts';
import type { LeaseEntry } from '../../src/locks/fleet-lease.ts';
import { verifyBackup } from '../../src/restore/verify.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { allServicesRunningAtEnd, findOverlaps, quiesceIntervals } from '../../src/sim/audit.ts';
import type { NativeAppliance, SimJobRecord } from '../../src/sim/native-appliance.ts';
import { loopbackNativeSection, nativeTargets, startNativeAppliances } from '../../src/sim/native-fleet.ts';
import { startFleetHarness, waitFor, type CliResult, type FleetHarness, type WorkerProcess } from '../support/fleet.ts';
import { redisText } from '../support/redis-text.ts';
import { rawS3Client } from '../support/s3.ts';
import { capturingLogger } from '../support/capture-logger.ts';

interface RunDoc {
  backups: { target: string; id: string; manifestKey: string; quiesceMs: number; artifacts: { name: string; key: string; bytes: number; sha256: string }[] }[];
  failures: { target: string; code: string; message: string }[];
}

const backupPassword = 'Mixed-Fleet-2026!';
const nativeLeaseSeconds = 2;
const watchdogSeconds = 1;
const classic = ['vc01', 'vc02'];
const native = ['vcn01', 'vcn02'];

void describe('a mixed fleet (VCSA 5.5 + vCenter 8.0 native) through worker processes', () => {
  let h: FleetHarness;
  let appliances: NativeAppliance[];
  let secretsDir: string;
  const outputs: CliResult[] = [];
  const { logger, lines: logLines } = capturingLogger();

  before(async () => {
    secretsDir = await mkdtemp(join(tmpdir(), 'mixed-fleet-secrets-'));
    appliances = await startNativeAppliances(native.length, { archiveBytes: 48 * 1024, chunkBytes: 16 * 1024 });
    const targets = await nativeTargets(appliances, secretsDir);
    const passwordFile = join(secretsDir, 'backup-password');
    await writeFile(passwordFile, `${backupPassword}\n`, { mode: 0o600 });
    h = await startFleetHarness({
      count: classic.length,
      workers: 3,
      // Debug logs: the strongest version of "no secret in the logs".
      env: { LOG_LEVEL: 'debug' },
      tune: { quiesce: { maxConcurrent: 1, watchdogIntervalSeconds: watchdogSeconds } },
      edit: (raw) => {
        (raw['targets'] as unknown[]).push(...targets);
        raw['native'] = loopbackNativeSection({ maxConcurrent: 1, leaseSeconds: nativeLeaseSeconds, pollSeconds: 1, waitSeconds: 120, parts: ['seat'], backupPassword: { file: passwordFile } });
      },
    });
  });
  after(async () => {
    await h?.close();
    await Promise.allSettled((appliances ?? []).map((a) => a.stop()));
    if (secretsDir) await rm(secretsDir, { recursive: true, force: true });
  });

  const cli = async (args: readonly string[]): Promise<CliResult> => {
    const res = await h.cli(args);
    outputs.push(res);
    return res;
  };
  const applianceOf = (name: string): NativeAppliance => {
    const a = appliances.find((x) => x.name === name);
    assert.ok(a, name);
    return a;
  };
  const nativeHolders = async (): Promise<LeaseEntry[]> => Object.values(await h.redis.hgetall(`${h.prefix}:native:lease:holders`)).map((raw) => JSON.parse(raw) as LeaseEntry);
  const manifestOf = async (key: string): Promise<Manifest> => {
    const client = rawS3Client(h.fleet.sim.s3);
    try {
      const got = await client.send(new GetObjectCommand({ Bucket: h.fleet.sim.s3.bucket, Key: key }));
      return JSON.parse(await (got.Body?.transformToString() ?? Promise.resolve('{}'))) as Manifest;
    } finally {
      client.destroy();
    }
  };
  /**
   * `verify` of a backup, in this process (a command per backup costs seconds of start-up):
   * checksums, the 5.5 dumps loaded into scratch databases, the native archive's own metadata
   * read back. Its logs are scanned for secrets with the rest.
   */
  const verified = async (target: string, id: string): Promise<void> => {
    const config = h.config();
    const store = createS3ObjectStore(config.s3, logger);
    try {
      const report = await verifyBackup({ config, target, backup: id, store, logger, redis: h.redis });
      assert.equal(report.ok, true, `verify ${target} ${id}: ${report.message}`);
      assert.equal(report.id, id);
      assert.equal(report.checksums, 'ok');
      if (native.includes(target)) assert.deepEqual(report.checks.map((c) => `${c.name}:${c.status}`).sort(), ['archive-files:pass', 'archive-parts:pass', 'archive-password:pass', 'archive-version:pass']);
      else assert.deepEqual(report.databases.map((d) => d.loaded), [true, true]);
    } finally {
      store.close();
    }
  };
  /** The appliances' jobs as [start, end] windows; a running job ends "now". */
  const windows = (jobs: readonly SimJobRecord[], since: number): { id: string; from: number; to: number }[] =>
    jobs.filter((j) => Date.parse(j.start_time) >= since).map((j) => ({ id: j.id, from: Date.parse(j.start_time), to: j.end_time ? Date.parse(j.end_time) : Date.now() }));

  void test('one run backs up both kinds; each pool keeps its limit; every appliance has a verified backup', async () => {
    const t0 = Date.now();
    const res = await cli(['run', ...[...classic, ...native].flatMap((t) => ['--target', t]), '--wait', '--json']);
    assert.equal(res.code, 0, `run --wait failed:\n${res.stdout}\n${res.stderr.slice(-3000)}`);
    const doc = JSON.parse(res.stdout) as RunDoc;
    assert.deepEqual(doc.failures, []);
    assert.deepEqual(doc.backups.map((b) => b.target).sort(), [...classic, ...native]);

    // quiesce.maxConcurrent (1) over the 5.5 appliances: the audit log's windows never overlap.
    const audit = await h.audit();
    const intervals = quiesceIntervals(audit).filter((i) => i.from >= t0);
    assert.deepEqual(findOverlaps(intervals), [], 'two 5.5 appliances quiesced at the same instant');
    for (const t of classic) assert.equal(intervals.filter((i) => i.appliance === t).length, 1, `${t} quiesced once`);
    assert.ok(allServicesRunningAtEnd(audit));
    for (const a of h.fleet.appliances) assert.ok(await a.servicesRunning(), `${a.name} running`);

    // native.maxConcurrent (1) over the 8.0 appliances: their backup jobs never ran at once.
    const jobs = appliances.flatMap((a) => windows(a.jobs, t0)).sort((a, b) => a.from - b.from);
    assert.equal(jobs.length, native.length, JSON.stringify(jobs));
    for (let i = 1; i < jobs.length; i++) {
      const [prev, next] = [jobs[i - 1], jobs[i]];
      assert.ok(prev && next && next.from >= prev.to, `appliance jobs ${prev?.id} and ${next?.id} overlap: ${JSON.stringify(jobs)}`);
    }
    for (const a of appliances) assert.ok(a.jobs.every((j) => j.state === 'SUCCEEDED'), `${a.name}: ${JSON.stringify(a.jobs.map((j) => j.state))}`);
    // Native backups stop nothing.
    for (const t of native) assert.ok(!audit.some((e) => e.appliance === t));

    for (const b of doc.backups) {
      if (native.includes(b.target)) {
        assert.equal(b.quiesceMs, 0);
        const m = await manifestOf(b.manifestKey);
        const job = applianceOf(b.target).jobs.at(-1);
        assert.equal(m.native?.applianceJobId, job?.id);
        assert.equal(m.native?.passwordProtected, true);
        assert.deepEqual(m.native?.parts, ['common', 'seat']);
        assert.deepEqual(m.artifacts.map((a) => [a.name, a.rawSha256]).sort(), job?.files.map((f) => [f.name, f.sha256]).sort());
      } else {
        assert.ok(b.quiesceMs > 0);
        assert.deepEqual(b.artifacts.map((a) => a.name), ['vcdb', 'inventory']);
      }
    }
    // Both kinds were spread over the workers' processes, not run by one.
    assert.ok(h.workers.filter((w) => w.log().includes('"backup committed"')).length >= 2);
    assert.deepEqual(await h.leaseHolders(), []);
    assert.deepEqual(await nativeHolders(), []);
    await Promise.all(doc.backups.map((b) => verified(b.target, b.id)));
  });

  void test('SIGKILL while an appliance job is INPROGRESS: the native watchdog cancels it, the appliance is not stuck, the retry commits', async (t) => {
    const vcn01 = applianceOf('vcn01');
    const jobsBefore = vcn01.jobs.length;
    vcn01.setFault({ kind: 'stuck' });
    const t0 = Date.now();
    const run = cli(['run', '--target', 'vcn01', '--wait', '--json']);
    // The appliance pushed its first file, then hangs INPROGRESS (its backup process died without telling the API).
    const stuck = await waitFor('vcn01 to be stuck INPROGRESS', () => vcn01.jobs.slice(jobsBefore).find((j) => j.state === 'INPROGRESS' && j.files.length >= 1), 30_000, 20);
    const entry = await waitFor('the native lease entry of vcn01', async () => (await nativeHolders()).find((e) => e.target === 'vcn01'), 10_000, 20);
    const victim = h.workers.find((w) => w.pid === Number(entry.holder.split(':')[1]));
    assert.ok(victim, `no worker of ours holds vcn01's native slot (${entry.holder})`);
    const record = JSON.parse((await h.redis.hget(`${h.prefix}:native:jobs`, 'vcn01')) ?? '{}') as { applianceJobId?: string };
    assert.equal(record.applianceJobId, stuck.id, 'the running appliance job is recorded for the watchdog');
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    await victim.exited();
    vcn01.setFault({ kind: 'none' });

    // The watchdog of a live worker cancels the dead worker's job within lease + interval.
    await waitFor('the stuck job to end', () => stuck.state !== 'INPROGRESS', 30_000, 20);
    const endedAfterMs = Date.now() - killedAt;
    assert.equal(stuck.cancelled, true, 'the appliance job was cancelled, not left to fail on its own');
    assert.equal(stuck.state, 'FAILED');
    assert.match(JSON.stringify(stuck.messages), /Backup job was canceled/);
    const limitMs = (nativeLeaseSeconds + watchdogSeconds) * 1000 + 5000;
    assert.ok(endedAfterMs <= limitMs, `the stuck job ended ${endedAfterMs} ms after the kill (limit ${limitMs})`);
    t.diagnostic(`stuck appliance job cancelled ${endedAfterMs} ms after SIGKILL (limit ${limitMs} ms)`);
    const rescuer = (w: WorkerProcess): boolean => w !== victim && w.log().includes('native watchdog: the dead worker') && w.log().includes(stuck.id);
    await waitFor('a live worker to report the cancel', () => h.workers.some(rescuer));
    h.startWorker();

    const res = await run;
    assert.equal(res.code, 0, `run --wait failed:\n${res.stdout}\n${res.stderr.slice(-3000)}`);
    const doc = JSON.parse(res.stdout) as RunDoc;
    assert.deepEqual(doc.backups.map((b) => b.target), ['vcn01']);
    const backup = doc.backups[0];
    assert.ok(backup);
    // The retry asked the appliance for a fresh backup, once the stuck one had ended, and
    // committed exactly what that job sent: nothing of the cancelled job's file.
    const fresh = vcn01.jobs.slice(jobsBefore).filter((j) => j !== stuck);
    assert.deepEqual(fresh.map((j) => j.state), ['SUCCEEDED']);
    const freshJob = fresh[0];
    assert.ok(freshJob && Date.parse(freshJob.start_time) >= Date.parse(stuck.end_time ?? ''), 'the fresh job started after the stuck one ended');
    const m = await manifestOf(backup.manifestKey);
    assert.equal(m.native?.applianceJobId, freshJob.id);
    assert.deepEqual(m.artifacts.map((a) => [a.name, a.rawSha256]).sort(), freshJob.files.map((f) => [f.name, f.sha256]).sort());
    assert.ok(!vcn01.jobs.some((j) => j.state === 'INPROGRESS'), 'no job left running on the appliance');
    assert.deepEqual(await nativeHolders(), []);
    assert.deepEqual(await h.redis.hgetall(`${h.prefix}:native:jobs`), {});
    assert.ok(t0 < Date.parse(freshJob.start_time));
    await verified('vcn01', backup.id);
  });

  void test('no API password, session id, location password or backup password in Redis, logs, outputs, S3 metadata or manifests', async () => {
    const secrets = [backupPassword, ...appliances.flatMap((a) => [a.password, ...a.stats.sessionIdsIssued, ...a.stats.locationPasswords])];
    // Every kind was really used: a session per job, a receiver password at validate and at start.
    for (const a of appliances) {
      assert.ok(a.stats.sessionIdsIssued.length >= 1 && a.stats.locationPasswords.length >= 2, `${a.name}: ${JSON.stringify({ sessions: a.stats.sessionIdsIssued.length, locations: a.stats.locationPasswords.length })}`);
    }
    const places: [string, string][] = [['redis', await redisText(h.redis, h.prefix)]];
    for (const w of h.workers) places.push([`worker ${w.n} log`, w.log()]);
    places.push(['verify logs', logLines.join('')]);
    outputs.forEach((o, i) => places.push([`command ${i} output`, `${o.stdout}\n${o.stderr}`]));
    const client = rawS3Client(h.fleet.sim.s3);
    try {
      const listed = await client.send(new ListObjectsV2Command({ Bucket: h.fleet.sim.s3.bucket }));
      assert.ok((listed.Contents ?? []).length > 0);
      for (const o of listed.Contents ?? []) {
        const head = await client.send(new HeadObjectCommand({ Bucket: h.fleet.sim.s3.bucket, Key: o.Key }));
        places.push([`s3 metadata ${o.Key ?? ''}`, JSON.stringify({ metadata: head.Metadata, contentType: head.ContentType, key: o.Key })]);
        if (o.Key?.endsWith('manifest.json')) places.push([`manifest ${o.Key}`, JSON.stringify(await manifestOf(o.Key))]);
      }
    } finally {
      client.destroy();
    }
    // The places are not empty: job data, return values and the workers' native steps are in them.
    const redis = places[0]?.[1] ?? '';
    assert.match(redis, /vcn01/);
    assert.match(redis, /applianceJobId|manifestKey/);
    assert.ok(h.workers.some((w) => w.log().includes('appliance backup job started')));
    for (const [where, text] of places) {
      for (const s of secrets) assert.ok(!text.includes(s), `a secret (${s.length} characters) is in ${where}`);
    }
  });
});
