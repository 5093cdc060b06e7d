import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { startFleetHarness, type CliResult, type FleetHarness } from '../support/fleet.ts';
import { redisText } from '../support/redis-text.ts';
import { rawS3Client } from '../support/s3.ts';

/**
 * Encryption through the real processes: a queued backup on a worker (passphrase from the
 * environment, so age's scrypt recipient; logs at debug), then `list`, `verify` and a refused
 * `restore` from the CLI. The
 * passphrase is in none of their logs or outputs, nor in Redis (job data and results, state) or
 * S3 metadata.
 */
void describe('encrypted backups through the queue and the CLI', () => {
  const hex = randomBytes(6).toString('hex');
  const passphrase = `queued-${hex}-passphrase`;
  const envName = `TEST_BACKUP_PASSPHRASE_${hex.toUpperCase()}`;
  let h: FleetHarness;
  let s3: S3Client;
  let id: string;
  const outputs: CliResult[] = [];

  before(async () => {
    h = await startFleetHarness({
      count: 1,
      workers: 1,
      env: { [envName]: passphrase, LOG_LEVEL: 'debug' },
      edit: (raw) => {
        // A small work factor: every worker and command derives the key again (age's 18 is
        // checked against `age -d` in encrypted-backup.test.ts).
        raw['encryption'] = { passphrase: { env: envName }, passphraseWorkFactor: 12 };
      },
    });
    s3 = rawS3Client(h.fleet.sim.s3);
  });
  after(async () => {
    s3?.destroy();
    await h?.close();
  });

  void test('a queued backup is stored encrypted; list shows it, verify decrypts it', async () => {
    const run = await h.cli(['run', '--target', 'vc01', '--wait', '--json']);
    assert.equal(run.code, 0, run.stderr);
    outputs.push(run);
    const doc = JSON.parse(run.stdout) as { backups: { id: string; artifacts: { key: string }[] }[] };
    const backup = doc.backups[0]!;
    id = backup.id;
    assert.ok(backup.artifacts.length === 2 && backup.artifacts.every((a) => a.key.endsWith('.gz.age')), JSON.stringify(backup.artifacts));

    const list = await h.cli(['list', '--target', 'vc01', '--json']);
    assert.equal(list.code, 0, list.stderr);
    outputs.push(list);
    const listed = (JSON.parse(list.stdout) as { backups: { id: string; encrypted: boolean; artifacts: { encryption: { algorithm: string; passphrase: unknown } | null }[] }[] }).backups;
    assert.equal(listed[0]?.id, id);
    assert.equal(listed[0]?.encrypted, true);
    assert.ok(listed[0]?.artifacts.every((a) => a.encryption?.algorithm === 'age' && a.encryption.passphrase !== null));
    const table = await h.cli(['list', '--target', 'vc01']);
    assert.match(table.stdout, /age \(passphrase\)/);
    outputs.push(table);

    const verify = await h.cli(['verify', '--target', 'vc01', '--json']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    outputs.push(verify);
    assert.equal((JSON.parse(verify.stdout) as { ok: boolean }).ok, true);
  });

  void test('restore with another passphrase exits 1 with DECRYPT_FAILED and stops nothing', async () => {
    const auditBefore = (await h.audit()).length;
    const res = await h.cli(['restore', '--target', 'vc01', '--backup', id, '--yes', '--json'], { [envName]: `another-${hex}-passphrase` });
    outputs.push(res);
    assert.equal(res.code, 1, res.stdout + res.stderr);
    assert.match(res.stdout + res.stderr, /DECRYPT_FAILED/);
    assert.match(res.stdout + res.stderr, /none of the configured keys opens it .*encrypted with a passphrase/);
    assert.deepEqual((await h.audit()).slice(auditBefore).filter((e) => e.state === 'stopped'), [], 'no service was stopped');
  });

  void test('the passphrase is in no log, output, Redis value or S3 metadata', async () => {
    for (const [i, o] of outputs.entries()) {
      assert.ok(!o.stdout.includes(passphrase) && !o.stderr.includes(passphrase), `CLI run ${i} shows the passphrase`);
    }
    const log = h.workers[0]!.log();
    assert.ok(log.includes('"level":20') && log.includes('artifacts encrypted'), 'the worker did not log the encryption at debug level');
    assert.ok(!log.includes(passphrase), 'the worker log shows the passphrase');
    const redisDump = await redisText(h.redis, h.prefix);
    assert.ok(redisDump.includes('spool'), 'the job data was not found in Redis');
    assert.ok(!redisDump.includes(passphrase), 'Redis holds the passphrase');
    const store = createS3ObjectStore({ ...h.config().s3, bucket: h.fleet.sim.s3.bucket });
    try {
      let objects = 0;
      for await (const o of store.list('')) {
        const head = await s3.send(new HeadObjectCommand({ Bucket: h.fleet.sim.s3.bucket, Key: o.key }));
        assert.ok(!JSON.stringify(head.Metadata ?? {}).includes(passphrase), `metadata of ${o.key}`);
        if (o.key.endsWith('manifest.json')) assert.ok(!(await store.getBytes(o.key)).toString('utf8').includes(passphrase));
        objects += 1;
      }
      assert.ok(objects >= 3);
    } finally {
      store.close();
    }
  });
});
