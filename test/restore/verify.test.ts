import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { silentLogger } from '../../src/log.ts';
import { verifyBackup } from '../../src/restore/verify.ts';
import { afterBackup } from '../../src/retention/after-backup.ts';
import { listBackups } from '../../src/catalog/catalog.ts';
import { readAudit } from '../../src/sim/audit.ts';
import { targetStateKey } from '../../src/state/fleet-state.ts';
import { waitFor } from '../support/fleet.ts';
import { rawS3Client } from '../support/s3.ts';
import { createFixture, type Fixture } from './fixture.ts';

async function databaseExists(fx: Fixture, name: string): Promise<boolean> {
  const out = await fx.appliances.get('vc1')!.sql('vcdb', `SELECT count(*) FROM pg_database WHERE datname = '${name}';`);
  return out.trim() !== '0';
}

void describe('verify: a restore drill into scratch databases', () => {
  let fx: Fixture;

  before(async () => {
    fx = await createFixture(['vc1']);
    const sim = fx.appliances.get('vc1')!;
    await waitFor('vpxd to write events', async () => (await sim.readSequences()).vcdb >= 5);
  });
  after(async () => {
    await fx?.close();
  });

  void test('a quiesced backup loads, counts its rows, and its pair is consistent; the result is in Redis', async () => {
    const outcome = await fx.backup('vc1');
    const auditBefore = (await readAudit(fx.auditLog)).length;
    const report = await verifyBackup({ config: fx.config(), target: 'vc1', backup: outcome.manifest.id, store: fx.store, logger: silentLogger, redis: fx.redis });
    assert.equal(report.ok, true, report.message);
    assert.equal(report.checksums, 'ok');
    assert.deepEqual(report.databases.map((d) => [d.name, d.loaded]), [['vcdb', true], ['inventory', true]]);
    const vcdb = report.databases[0]!;
    const entities = vcdb.tables.find((t) => t.name === 'public.vpx_entity');
    assert.equal(entities?.rows, 7);
    assert.ok((vcdb.tables.find((t) => t.name === 'public.vpx_event')?.rows ?? 0) >= 5);
    assert.ok(vcdb.bytes > 0);
    assert.deepEqual(report.checks.map((c) => [c.name, c.status]), [['vpxd-sequence', 'pass']]);
    assert.equal(report.checks[0]!.values['vcdb'], report.checks[0]!.values['inventory']);

    const stored = JSON.parse((await fx.redis.hget(targetStateKey(fx.prefix, 'vc1'), 'lastVerify'))!);
    assert.deepEqual({ id: stored.id, ok: stored.ok }, { id: outcome.manifest.id, ok: true });
    assert.deepEqual((await readAudit(fx.auditLog)).slice(auditBefore), [], 'verify never touches the appliance');
    for (const db of report.databases) {
      assert.match(db.scratchDatabase ?? '', /^vcsa_verify_/);
      assert.equal(db.dropped, true);
      assert.equal(await databaseExists(fx, db.scratchDatabase!), false, `${db.scratchDatabase} dropped`);
    }
  });

  void test('a pair taken without quiescing while the services run fails the consistency check', async () => {
    const outcome = await fx.backupDisagreeing('vc1');
    const report = await verifyBackup({ config: fx.config(), target: 'vc1', backup: outcome.manifest.id, store: fx.store, logger: silentLogger, redis: fx.redis });
    assert.equal(report.ok, false);
    assert.deepEqual(report.databases.map((d) => d.loaded), [true, true], 'both dumps load; only the pair disagrees');
    assert.equal(report.checks[0]?.status, 'fail');
    assert.match(report.message, /vpxd-sequence: inconsistent pair: vcdb=\d+, inventory=\d+/);
    const stored = JSON.parse((await fx.redis.hget(targetStateKey(fx.prefix, 'vc1'), 'lastVerify'))!);
    assert.equal(stored.ok, false);
  });

  void test('a damaged object fails verification with a checksum mismatch', async () => {
    const outcome = await fx.backup('vc1');
    const artifact = outcome.manifest.artifacts[0]!;
    const raw = rawS3Client(fx.s3);
    try {
      const got = await raw.send(new GetObjectCommand({ Bucket: fx.s3.bucket, Key: artifact.key }));
      const body = Buffer.from(await got.Body!.transformToByteArray());
      body[body.length - 10]! ^= 0xff;
      await raw.send(new PutObjectCommand({ Bucket: fx.s3.bucket, Key: artifact.key, Body: body }));
    } finally {
      raw.destroy();
    }
    const report = await verifyBackup({ config: fx.config(), target: 'vc1', backup: 'latest', store: fx.store, logger: silentLogger });
    assert.equal(report.id, outcome.manifest.id);
    assert.equal(report.ok, false);
    assert.equal(report.checksums, 'mismatch');
    assert.match(report.message, /does not match its manifest/);
  });

  void test('checks from the config replace the built-in ones; a check whose tables are missing is skipped', async () => {
    const config = fx.config({
      verify: {
        checks: [
          { profile: 'vcsa-5.5', name: 'entities-present', sql: { vcdb: 'SELECT count(*) > 0 FROM public.vpx_entity', inventory: 'SELECT true' } },
          { profile: 'vcsa-5.5', name: 'real-vcenter-only', sql: { vcdb: 'SELECT 1' }, requires: { vcdb: ['vc.vpx_version'] } },
        ],
      },
    });
    const outcome = await fx.backup('vc1');
    const report = await verifyBackup({ config, target: 'vc1', backup: outcome.manifest.id, store: fx.store, logger: silentLogger });
    assert.equal(report.ok, true, report.message);
    assert.deepEqual(report.checks.map((c) => [c.name, c.status]), [['entities-present', 'pass'], ['real-vcenter-only', 'skipped']]);
  });

  void test('after a backup: the drill runs, then retention; a backup that fails its drill prunes nothing', async () => {
    const config = fx.config({ verify: { afterBackup: true }, retention: { keepLast: 1 } });
    const count = async (): Promise<number> => (await listBackups(fx.store, 'vcsa', 'vc1')).length;
    // An older backup that keepLast 1 would prune, so that "nothing pruned" can fail.
    await fx.backup('vc1');
    const outcome = await fx.backupDisagreeing('vc1');
    const before = await count();
    const bad = await afterBackup({ config, target: 'vc1', id: outcome.manifest.id, store: fx.store, logger: silentLogger });
    assert.equal(bad.verify?.ok, false);
    assert.equal(bad.prune, null);
    assert.match(bad.pruneSkipped ?? '', /failed verification/);
    assert.ok(before >= 2, 'there was something to prune');
    assert.equal(await count(), before, 'a backup that fails its drill prunes nothing');

    const good = await fx.backup('vc1');
    const after = await afterBackup({ config, target: 'vc1', id: good.manifest.id, store: fx.store, logger: silentLogger });
    assert.equal(after.verify?.ok, true, after.verify?.message);
    assert.ok((after.prune?.deleted.length ?? 0) > 1);
    assert.deepEqual((await listBackups(fx.store, 'vcsa', 'vc1')).map((e) => e.id), [good.manifest.id]);
  });
});
