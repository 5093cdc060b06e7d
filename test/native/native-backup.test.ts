/**
 * vcsa-native end to end in one process: simulated 8.0 and 6.7 appliances (real HTTPS, real
 * SFTP pushes into the per-job receiver), the embedded S3 endpoint, `runNativeBackup` and
 * `verify`. Every failure mode of the simulator ends with a clear error and no manifest; no
 * password or session id reaches logs, S3 or errors.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { listBackups } from '../../src/catalog/catalog.ts';
import { parseConfig, type Config } from '../../src/config/load.ts';
import { BackupError, errorMessage } from '../../src/errors.ts';
import { runNativeBackup } from '../../src/native/native-job.ts';
import { verifyBackup } from '../../src/restore/verify.ts';
import type { NativeAppliance } from '../../src/sim/native-appliance.ts';
import { loopbackNativeSection, nativeTargets, startNativeAppliances } from '../../src/sim/native-fleet.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { rawS3Client, s3ConfigFor } from '../support/s3.ts';
import { capturingLogger } from '../support/capture-logger.ts';

const backupPassword = 'Vc$a-Backup-2026';
let dir: string;
let s3: EmbeddedS3;
let store: ObjectStore;
let appliances: NativeAppliance[];
const { logger, lines: logLines } = capturingLogger();

function config(overrides: Record<string, unknown> = {}, targetsEdit?: (t: Record<string, unknown>[]) => void): Promise<Config> {
  return nativeTargets(appliances, join(dir, 'secrets')).then((targets) => {
    targetsEdit?.(targets);
    return parseConfig({
      s3: { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, forcePathStyle: true, checksums: 'when-required', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      spool: { dir: join(dir, 'spool'), minFreeMiB: 1 },
      native: loopbackNativeSection({ pollSeconds: 1, ...overrides }),
      targets,
    });
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'native-test-'));
  s3 = await startEmbeddedS3();
  appliances = await startNativeAppliances(2, { versions: ['8.0.2.00100', '6.7.0.51000'], archiveBytes: 48 * 1024, chunkBytes: 16 * 1024 });
  store = createS3ObjectStore(s3ConfigFor(s3), logger);
});

after(async () => {
  store.close();
  await Promise.allSettled(appliances.map((a) => a.stop()));
  await s3.stop();
  await rm(dir, { recursive: true, force: true });
});

function target(cfg: Config, name: string): Config['targets'][number] {
  const t = cfg.targets.find((x) => x.name === name);
  assert.ok(t);
  return t;
}

void describe('vcsa-native backups', () => {
  void test('8.0 (/api): the appliance pushes its backup over SFTP; the manifest records version, job, parts, sizes, sha256 and the password flag; verify reads the metadata back', async () => {
    const [vc8] = appliances;
    assert.ok(vc8);
    const cfg = await config({ parts: ['seat'], backupPassword });
    const result = await runNativeBackup({ config: cfg, target: target(cfg, vc8.name), store, logger });
    const m = result.manifest;
    assert.equal(m.profile, 'vcsa-native');
    assert.equal(m.quiesce, null);
    assert.ok(m.native);
    assert.equal(m.native.applianceVersion, vc8.version);
    assert.equal(m.native.applianceBuild, vc8.build);
    assert.equal(m.native.apiDialect, 'api');
    assert.deepEqual(m.native.parts, ['common', 'seat']);
    assert.equal(m.native.passwordProtected, true);
    const job = vc8.jobs.at(-1);
    assert.ok(job && job.state === 'SUCCEEDED');
    assert.equal(m.native.applianceJobId, job.id);
    // Exactly what the appliance sent, byte for byte.
    assert.deepEqual(
      m.artifacts.map((a) => [a.name, a.rawBytes, a.rawSha256]).sort(),
      job.files.map((f) => [f.name, f.bytes, f.sha256]).sort(),
    );
    assert.ok(job.files.some((f) => f.name === 'stats_events_tasks.tar.gz'), 'seat part included');
    const listed = await listBackups(store, 'vcsa', vc8.name);
    assert.deepEqual(listed.map((b) => b.id), [m.id]);
    const report = await verifyBackup({ config: cfg, target: vc8.name, backup: m.id, store, logger });
    assert.equal(report.ok, true, report.message);
    assert.equal(report.checksums, 'ok');
    assert.deepEqual(report.checks.map((c) => `${c.name}:${c.status}`).sort(), ['archive-files:pass', 'archive-parts:pass', 'archive-password:pass', 'archive-version:pass']);
    // The spool is gone once committed.
    assert.deepEqual(await readdir(join(dir, 'spool', vc8.name)).catch(() => []), []);
  });

  void test('6.7 (/rest, {"value"} and {"piece"}): a session that expires mid-poll and 503s are survived', async () => {
    const vc67 = appliances[1];
    assert.ok(vc67);
    const cfg = await config();
    vc67.setFault({ kind: 'session-expiry' });
    const before = vc67.stats.logins;
    const result = await runNativeBackup({ config: cfg, target: target(cfg, vc67.name), store, logger });
    assert.equal(result.manifest.native?.apiDialect, 'rest');
    assert.equal(result.manifest.native?.passwordProtected, false);
    assert.ok(vc67.stats.logins >= before + 2, 'logged in again after the session expired');
    vc67.setFault({ kind: 'unavailable', count: 3 });
    const again = await runNativeBackup({ config: cfg, target: target(cfg, vc67.name), store, logger });
    assert.ok(again.manifest.id > result.manifest.id);
    vc67.setFault({ kind: 'none' });
  });

  const failures: { fault: Parameters<NativeAppliance['setFault']>[0]; code: string; quote: RegExp; tune?: Record<string, unknown> }[] = [
    { fault: { kind: 'wrong-location-credentials' }, code: 'NATIVE_VALIDATE_FAILED', quote: /"Authentication failed for user vcsa-backup-[a-z0-9]+ on location sftp:\/\/127\.0\.0\.1/ },
    { fault: { kind: 'unreachable-location' }, code: 'NATIVE_VALIDATE_FAILED', quote: /"Location sftp:\/\/.* is not reachable/ },
    { fault: { kind: 'transfer-cut' }, code: 'NATIVE_JOB_FAILED', quote: /FAILED at \d+%: .*"Transfer of database_full_backup\.tar\.gz .* failed: connection lost after/ },
    { fault: { kind: 'stuck' }, code: 'NATIVE_JOB_TIMEOUT', quote: /did not finish within 5 s \(native\.jobTimeoutSeconds\)/, tune: { jobTimeoutSeconds: 5 } },
    { fault: { kind: 'unavailable', count: 50 }, code: 'NATIVE_API_UNAVAILABLE', quote: /HTTP 503 .*"The service is temporarily unavailable/ },
  ];
  for (const f of failures) {
    void test(`failure mode ${f.fault.kind}: ${f.code} quoting the appliance, no manifest, nothing spooled, the appliance's job not left running`, async () => {
      const [vc8] = appliances;
      assert.ok(vc8);
      const cfg = await config(f.tune ?? {});
      const before = (await listBackups(store, 'vcsa', vc8.name)).length;
      vc8.setFault(f.fault);
      try {
        await assert.rejects(runNativeBackup({ config: cfg, target: target(cfg, vc8.name), store, logger }), (err: unknown) => {
          assert.ok(err instanceof BackupError, String(err));
          assert.equal(err.code, f.code, err.message);
          assert.match(err.message, f.quote);
          return true;
        });
      } finally {
        vc8.setFault({ kind: 'none' });
      }
      assert.equal((await listBackups(store, 'vcsa', vc8.name)).length, before, 'no new manifest');
      assert.deepEqual(await readdir(join(dir, 'spool', vc8.name)).catch(() => []), [], 'nothing left in the spool');
      assert.ok(!vc8.jobs.some((j) => j.state === 'INPROGRESS'), 'no appliance job left running');
      // A job the timeout caught running was cancelled on the appliance (under load the timeout may come first).
      if (f.fault.kind === 'stuck' && vc8.jobs.at(-1)?.state === 'FAILED') assert.match(JSON.stringify(vc8.jobs.at(-1)?.messages), /canceled|failed/i);
    });
  }

  void test('a wrong api password and a wrong pinned fingerprint fail for good, naming the field', async () => {
    const [vc8] = appliances;
    assert.ok(vc8);
    const wrongPw = await config({}, (targets) => {
      const api = targets[0]?.['api'] as Record<string, unknown>;
      api['password'] = 'not-the-password';
    });
    const e1 = await runNativeBackup({ config: wrongPw, target: target(wrongPw, vc8.name), store, logger }).catch((e: unknown) => e);
    assert.ok(e1 instanceof BackupError && e1.code === 'NATIVE_AUTH_FAILED' && e1.permanent, errorMessage(e1));
    assert.match(e1.message, /api\.password/);
    const wrongPin = await config({}, (targets) => {
      const api = targets[0]?.['api'] as Record<string, unknown>;
      api['tls'] = { fingerprint: Array.from({ length: 32 }, () => 'AB').join(':') };
    });
    const e2 = await runNativeBackup({ config: wrongPin, target: target(wrongPin, vc8.name), store, logger }).catch((e: unknown) => e);
    assert.ok(e2 instanceof BackupError && e2.code === 'NATIVE_TLS_PIN_MISMATCH' && e2.permanent, errorMessage(e2));
    assert.match(e2.message, /pinned/);
  });

  void test('no API password, backup password, receiver password or session id in logs, S3 objects or their metadata', async () => {
    const secrets = [backupPassword, ...appliances.flatMap((a) => [a.password, ...a.stats.sessionIdsIssued, ...a.stats.locationPasswords])];
    assert.ok(secrets.length > 6);
    const logs = logLines.join('');
    const client = rawS3Client(s3);
    const listed = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket }));
    const texts = [logs];
    for (const o of listed.Contents ?? []) {
      const head = await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: o.Key }));
      texts.push(JSON.stringify(head.Metadata ?? {}));
      if (o.Key?.endsWith('manifest.json')) texts.push((await store.getBytes(o.Key)).toString('utf8'));
    }
    client.destroy();
    for (const s of secrets) for (const t of texts) assert.ok(!t.includes(s), 'a secret leaked into logs or S3');
  });
});
