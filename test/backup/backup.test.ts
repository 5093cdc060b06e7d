import assert from 'node:assert/strict';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { stringify } from 'yaml';
import { runBackup } from '../../src/backup/run-backup.ts';
import { parseConfig, type Config, type TargetConfig } from '../../src/config/load.ts';
import { BackupError } from '../../src/errors.ts';
import { createExecutor } from '../../src/executors/index.ts';
import { silentLogger } from '../../src/log.ts';
import { createSimAppliance, type SimAppliance } from '../../src/sim/appliance.ts';
import { quiesceIntervals, readAudit } from '../../src/sim/audit.ts';
import { dumpPairSequences } from '../../src/sim/dump-sequences.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { preflightFolder } from '../../src/storage/preflight.ts';
import type { Manifest } from '../../src/backup/manifest.ts';
import { ForwardingStore, type ObjectStore, type PutOptions, type PutResult } from '../../src/storage/object-store.ts';
import { runCli, waitFor } from '../support/fleet.ts';
import { RecordingStore } from '../support/recording-store.ts';
import { s3ConfigFor } from '../support/s3.ts';
import { disagreeingInventoryScripts } from '../support/unquiesced-pair.ts';

interface BackupDoc {
  backups: { target: string; id: string; bucket: string; manifestKey: string; quiesceMs: number; artifacts: { name: string; key: string; bytes: number; sha256: string }[] }[];
  failures: { target: string; code: string; message: string }[];
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function filesUnder(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries.filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/**
 * Issue 2: one simulated VCSA 5.5 backed up to an embedded S3 endpoint, in-process (`runBackup`)
 * and through `vcsa-backup backup --json`: verified objects, manifest last, no colons, no spool
 * left behind; a failing dump and a cancelled one leave the services running and nothing in S3;
 * quiescing is what makes the two databases' dumps agree.
 */
void describe('one appliance backed up to S3', () => {
  let dir: string;
  let s3: EmbeddedS3;
  let store: ObjectStore;
  let sim: SimAppliance;
  let auditLog: string;
  let spoolDir: string;
  const suffix = randomBytes(3).toString('hex');

  const raw = (variables: Record<string, string> = {}, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    s3: { bucket: s3.bucket, prefix: 'vcsa', endpoint: s3.endpoint, forcePathStyle: true, checksums: 'when-required', partSizeMiB: 5, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    spool: { dir: spoolDir, minFreeMiB: 0 },
    retention: { afterBackup: false },
    targets: [{ name: 'vc01', profile: 'vcsa-5.5', executor: { type: 'local' }, variables: { ...sim.variables, ...variables } }],
    ...extra,
  });
  const setup = (variables: Record<string, string> = {}, extra: Record<string, unknown> = {}): { config: Config; target: TargetConfig } => {
    const config = parseConfig(raw(variables, extra), { env: {} });
    const target = config.targets[0];
    assert.ok(target);
    return { config, target };
  };
  const backup = (config: Config, target: TargetConfig, signal?: AbortSignal): ReturnType<typeof runBackup> => {
    const executor = createExecutor(target.executor, silentLogger);
    return runBackup({ config, target, executor, store, logger: silentLogger, ...(signal ? { signal } : {}) }).finally(() => executor.close());
  };
  const objectKeys = async (prefix = 'vcsa/vc01/'): Promise<string[]> => {
    const keys: string[] = [];
    for await (const o of store.list(prefix)) keys.push(o.key);
    return keys.sort();
  };
  const clearBucket = async (): Promise<void> => {
    const keys = await objectKeys('');
    if (keys.length > 0) await store.deleteMany(keys);
  };
  const brokenVpgBin = async (): Promise<string> => {
    const bin = join(dir, 'broken-vpg-bin');
    await mkdir(bin, { recursive: true });
    await writeFile(join(bin, 'pg_dump'), '#!/bin/bash\necho "pg_dump: error: connection to server failed" >&2\nexit 1\n');
    await chmod(join(bin, 'pg_dump'), 0o755);
    return bin;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'backup-test-'));
    auditLog = join(dir, 'audit.jsonl');
    spoolDir = join(dir, 'spool');
    s3 = await startEmbeddedS3({ bucket: `backup-${suffix}` });
    store = createS3ObjectStore(s3ConfigFor(s3), silentLogger);
    sim = await createSimAppliance({ name: `bk-${suffix}`, baseDir: join(dir, 'appliances'), auditLog });
  });
  after(async () => {
    store?.close();
    await sim?.destroy();
    await s3?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  void test('runBackup: every object matches the manifest, manifest written, no colons, spool empty', async () => {
    await clearBucket();
    const { config, target } = setup();
    const recording = new RecordingStore(store);
    const executor = createExecutor(target.executor, silentLogger);
    const outcome = await runBackup({ config, target, executor, store: recording, logger: silentLogger }).finally(() => executor.close());
    const m = outcome.manifest;
    assert.equal(m.target, 'vc01');
    assert.equal(m.profile, 'vcsa-5.5');
    assert.deepEqual(m.artifacts.map((a) => a.name), ['vcdb', 'inventory']);
    assert.ok(m.quiesce && m.quiesce.ms > 0);
    // Each step's time, so an operator (and the bench) can tell work from waiting.
    for (const step of ['precheckMs', 'stopMs', 'dumpMs', 'startMs', 'compressMs', 'uploadMs']) assert.equal(typeof m.timings[step], 'number', `timings.${step} in ${JSON.stringify(m.timings)}`);
    assert.ok((m.timings['stopMs'] ?? Infinity) + (m.timings['dumpMs'] ?? Infinity) <= m.quiesce.ms, `stop + dump within the window: ${JSON.stringify(m.timings)} vs ${m.quiesce.ms} ms`);

    const stored = JSON.parse((await store.getBytes(outcome.manifestKey)).toString('utf8')) as Manifest;
    assert.deepEqual(stored, m);
    for (const a of m.artifacts) {
      const body = await store.getBytes(a.key);
      assert.equal(body.length, a.bytes, `${a.key} size`);
      assert.equal(sha256(body), a.sha256, `${a.key} sha256`);
      const rawDump = gunzipSync(body);
      assert.equal(rawDump.length, a.rawBytes);
      assert.equal(sha256(rawDump), a.rawSha256);
    }
    const keys = await objectKeys();
    assert.deepEqual(keys, [...m.artifacts.map((a) => a.key), outcome.manifestKey].sort());
    for (const k of keys) {
      assert.ok(!k.includes(':'), `colon in ${k}`);
      assert.ok(k.startsWith(`vcsa/vc01/${m.id}/`));
    }
    assert.deepEqual(await filesUnder(spoolDir), []);
    assert.ok(await sim.servicesRunning());
    // The manifest was the last object written, once, after every artifact: it is the commit point.
    // Before anything, the S3 preflight wrote, read and deleted one small object beside the targets (cached afterwards).
    const preflight = recording.log.filter((r) => r.key.startsWith('vcsa/.vcsa-backup-preflight/'));
    assert.ok(preflight.length === 0 || (recording.log[0] === preflight[0] && preflight.map((r) => r.op).join() === 'putBytes,deleteMany'), JSON.stringify(recording.log));
    assert.deepEqual(recording.log.filter((r) => !preflight.includes(r)), [...m.artifacts.map((a) => ({ op: 'putFile', key: a.key })), { op: 'putBytes', key: outcome.manifestKey }]);
  });

  void test('backup --json: the fields of DESIGN §6', async () => {
    await clearBucket();
    const configPath = join(dir, 'fleet-ok.yaml');
    await writeFile(configPath, stringify(raw()));
    const res = await runCli(['backup', '--target', 'vc01', '--config', configPath, '--json']);
    assert.equal(res.code, 0, res.stderr);
    const doc = JSON.parse(res.stdout) as BackupDoc;
    assert.deepEqual(doc.failures, []);
    assert.equal(doc.backups.length, 1);
    const b = doc.backups[0]!;
    assert.equal(b.target, 'vc01');
    assert.equal(b.bucket, s3.bucket);
    assert.equal(b.manifestKey, `vcsa/vc01/${b.id}/manifest.json`);
    assert.ok(b.quiesceMs > 0);
    assert.deepEqual(b.artifacts.map((a) => [a.name, a.key]), [
      ['vcdb', `vcsa/vc01/${b.id}/postgres.sql.gz`],
      ['inventory', `vcsa/vc01/${b.id}/inventory_services.DB.gz`],
    ]);
    for (const a of b.artifacts) {
      const body = await store.getBytes(a.key);
      assert.equal(body.length, a.bytes);
      assert.equal(sha256(body), a.sha256);
    }
    assert.deepEqual(await filesUnder(spoolDir), []);
  });

  void test('a failing dump: services running, nothing in S3, no spool, the error quotes stderr', async () => {
    await clearBucket();
    const before = Date.now();
    const { config, target } = setup({ VPG_BIN: await brokenVpgBin() });
    await assert.rejects(backup(config, target), (err: unknown) => {
      assert.ok(err instanceof BackupError);
      assert.equal(err.code, 'COMMAND_FAILED');
      assert.match(err.message, /pg_dump: error: connection to server failed/);
      return true;
    });
    assert.ok(await sim.servicesRunning());
    const intervals = quiesceIntervals(await readAudit(auditLog)).filter((i) => i.from >= before);
    assert.equal(intervals.length, 1, 'the services were stopped once and started again');
    assert.ok(intervals[0]?.to !== null);
    assert.deepEqual(await objectKeys(), []);
    assert.deepEqual(await filesUnder(spoolDir), []);

    const configPath = join(dir, 'fleet-broken.yaml');
    await writeFile(configPath, stringify(raw({ VPG_BIN: join(dir, 'broken-vpg-bin') })));
    const res = await runCli(['backup', '--target', 'vc01', '--config', configPath, '--json']);
    assert.equal(res.code, 1, res.stderr);
    const doc = JSON.parse(res.stdout) as BackupDoc;
    assert.deepEqual(doc.backups, []);
    assert.equal(doc.failures.length, 1);
    assert.equal(doc.failures[0]?.target, 'vc01');
    assert.equal(doc.failures[0]?.code, 'COMMAND_FAILED');
    assert.match(doc.failures[0]?.message ?? '', /pg_dump: error: connection to server failed/);
    assert.ok(await sim.servicesRunning());
    assert.deepEqual(await objectKeys(), []);
    assert.deepEqual(await filesUnder(spoolDir), []);
  });

  const dumpSequences = async (manifest: Manifest): Promise<{ vcdb: number; inventory: number }> => {
    const body = async (name: string): Promise<Buffer> => gunzipSync(await store.getBytes(manifest.artifacts.find((a) => a.name === name)?.key ?? '?'));
    return dumpPairSequences(await body('vcdb'), await body('inventory'));
  };

  void test('quiescing off: the two dumps disagree; on: they agree', async () => {
    await waitFor('vpxd to write events', async () => (await sim.readSequences()).vcdb > 5);
    // Unquiesced, the inventory dump waits until vpxd's progress has reached the inventory
    // database past where the VCDB stood: what a running appliance does between the two dumps,
    // made certain instead of left to the simulator's tick.
    const scripts = await disagreeingInventoryScripts(dir, sim);
    const off = setup({ INVSVC_SCRIPTS: scripts }, { quiesce: { enabled: false } });
    const before = Date.now();
    const unquiesced = await backup(off.config, off.target);
    assert.equal(unquiesced.manifest.quiesce, null);
    const apart = await dumpSequences(unquiesced.manifest);
    assert.ok(apart.inventory > apart.vcdb, `the unquiesced pair disagrees: ${JSON.stringify(apart)}`);
    assert.deepEqual(quiesceIntervals(await readAudit(auditLog)).filter((i) => i.from >= before), [], 'quiesce.enabled: false stopped a service');

    const on = setup();
    const outcome = await backup(on.config, on.target);
    const pair = await dumpSequences(outcome.manifest);
    assert.ok(pair.vcdb > 0);
    assert.equal(pair.inventory, pair.vcdb);
  });

  void test('cancelled mid-dump: services started again, no spool, no manifest', async () => {
    await clearBucket();
    const bin = join(dir, 'slow-vpg-bin');
    await mkdir(bin, { recursive: true });
    // The slow pg_dump says when it is running and when its wait is over; the sleep's argument marks its process.
    const started = join(bin, 'started');
    const finished = join(bin, 'finished');
    const nap = `600.${randomInt(100_000, 999_999)}`;
    await writeFile(join(bin, 'pg_dump'), `#!/bin/bash\ntouch ${started}\nsleep ${nap}\ntouch ${finished}\nexec ${JSON.stringify(join(sim.root, 'opt/vmware/vpostgres/1.0/bin/pg_dump'))} "$@"\n`);
    await chmod(join(bin, 'pg_dump'), 0o755);
    const { config, target } = setup({ VPG_BIN: bin });
    const t0 = Date.now();
    const controller = new AbortController();
    const running = backup(config, target, controller.signal);
    await waitFor('the dump to start', () => existsSync(started));
    controller.abort(new BackupError('ABORTED', 'test cancels'));
    await assert.rejects(running, (err: unknown) => err instanceof BackupError && err.code === 'ABORTED');
    assert.equal(existsSync(finished), false, 'the dump was not cancelled: the backup waited for it');
    const left = spawnSync('pgrep', ['-f', `sleep ${nap}`], { encoding: 'utf8' });
    assert.equal(left.stdout.trim(), '', 'the cancelled dump is still running');
    assert.ok(await sim.servicesRunning());
    const intervals = quiesceIntervals(await readAudit(auditLog)).filter((i) => i.from >= t0);
    assert.equal(intervals.length, 1);
    assert.ok(intervals[0]?.to !== null);
    assert.deepEqual(await filesUnder(spoolDir), []);
    assert.deepEqual(await objectKeys(), []);
  });

  /**
   * The real store, recording each write and whether the appliance's services were running when it
   * finished (asked of the services themselves, not compared by clock); `failFirstPut` makes the
   * first artifact upload fail.
   */
  const timedStore = (failFirstPut: boolean): { store: ObjectStore; puts: { key: string; servicesRunning: boolean }[] } => {
    const puts: { key: string; servicesRunning: boolean }[] = [];
    let failed = !failFirstPut;
    class Flaky extends ForwardingStore {
      override async putFile(key: string, path: string, options?: PutOptions): Promise<PutResult> {
        if (!failed) {
          failed = true;
          throw new BackupError('S3_UNREACHABLE', 'injected: S3 went away during the upload');
        }
        return super.putFile(key, path, options);
      }
    }
    // The S3 preflight writes too, when its cached result (preflightCacheMs) has run out: not part of the order under test.
    const recording = new RecordingStore(new Flaky(store), {
      onWrite: async (key) => {
        if (!key.includes(`/${preflightFolder}/`)) puts.push({ key, servicesRunning: await sim.servicesRunning() });
      },
    });
    return { store: recording, puts };
  };

  void test('startServicesAfter: upload — the classic order: artifacts uploaded, then services started, then the manifest', async () => {
    await clearBucket();
    const { config, target } = setup({}, { quiesce: { startServicesAfter: 'upload' } });
    const t0 = Date.now();
    const { store: timed, puts } = timedStore(false);
    const executor = createExecutor(target.executor, silentLogger);
    const outcome = await runBackup({ config, target, executor, store: timed, logger: silentLogger }).finally(() => executor.close());
    const windows = quiesceIntervals(await readAudit(auditLog)).filter((i) => i.from >= t0);
    assert.equal(windows.length, 1);
    assert.deepEqual(
      puts,
      [...outcome.manifest.artifacts.map((a) => ({ key: a.key, servicesRunning: false })), { key: outcome.manifestKey, servicesRunning: true }],
      'each artifact uploaded once while the services were stopped, then the manifest with the services back',
    );
    assert.ok((outcome.manifest.quiesce?.ms ?? 0) >= (outcome.manifest.timings['uploadMs'] ?? Infinity), 'the quiesce window covers the upload');
    assert.equal(await sim.servicesRunning(), true);
  });

  void test('startServicesAfter: upload, the upload fails: services started, upload retried from the spool, one quiesce', async () => {
    await clearBucket();
    const { config, target } = setup({}, { quiesce: { startServicesAfter: 'upload' } });
    const t0 = Date.now();
    const { store: flaky, puts } = timedStore(true);
    const executor = createExecutor(target.executor, silentLogger);
    const outcome = await runBackup({ config, target, executor, store: flaky, logger: silentLogger }).finally(() => executor.close());
    const windows = quiesceIntervals(await readAudit(auditLog)).filter((i) => i.from >= t0);
    assert.equal(windows.length, 1, 'not quiesced again for the retry');
    assert.deepEqual(puts.map((p) => p.servicesRunning), [true, true, true], 'the retried upload (two artifacts, the manifest) ran with the services up');
    assert.deepEqual((await objectKeys()).length, 3);
    assert.equal(outcome.manifest.artifacts.length, 2);
    assert.deepEqual(await filesUnder(spoolDir), []);
  });
});
