import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { BackupError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { targetLockKey } from '../../src/locks/target-lock.ts';
import { restoreBackup } from '../../src/restore/restore.ts';
import { readAudit } from '../../src/sim/audit.ts';
import type { SimAppliance } from '../../src/sim/appliance.ts';
import { inventorySequenceFromArchive, vcdbSequenceFromSql } from '../../src/sim/dump-sequences.ts';
import type { BackupOutcome } from '../../src/backup/run-backup.ts';
import { waitFor } from '../support/fleet.ts';
import { captureBeforeFirstStart } from '../support/before-first-start.ts';
import { rawS3Client } from '../support/s3.ts';
import { createFixture, type Fixture } from './fixture.ts';

/** md5 of a table's rows in a stable order: equal checksums, equal contents. */
async function checksum(sim: SimAppliance, db: 'vcdb' | 'inventory', table: string, where = 'true'): Promise<string> {
  return (await sim.sql(db, `SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) || ':' || count(*) FROM ${table} t WHERE ${where};`)).trim();
}

async function names(sim: SimAppliance, db: 'vcdb' | 'inventory', table: string): Promise<string[]> {
  return (await sim.sql(db, `SELECT name FROM ${table} ORDER BY name;`)).split('\n').filter((l) => l !== '');
}

/** The sequence numbers inside a backup's dumps, read with the simulator's own helpers. */
async function dumpSequences(fx: Fixture, outcome: BackupOutcome): Promise<{ vcdb: number; inventory: number }> {
  const vcdb = outcome.manifest.artifacts.find((a) => a.name === 'vcdb')!;
  const inv = outcome.manifest.artifacts.find((a) => a.name === 'inventory')!;
  return {
    vcdb: vcdbSequenceFromSql(gunzipSync(await fx.store.getBytes(vcdb.key)).toString('utf8')),
    inventory: await inventorySequenceFromArchive(gunzipSync(await fx.store.getBytes(inv.key))),
  };
}

void describe('restore onto a simulated VCSA 5.5', () => {
  let fx: Fixture;
  let vc1: SimAppliance;
  let vc2: SimAppliance;
  let first: BackupOutcome;

  before(async () => {
    fx = await createFixture(['vc1', 'vc2']);
    vc1 = fx.appliances.get('vc1')!;
    vc2 = fx.appliances.get('vc2')!;
  });
  after(async () => {
    await fx?.close();
  });

  const restore = (name: string, backup: string, into = name, overrides: Record<string, unknown> = {}) => {
    const config = fx.config(overrides);
    const target = fx.target(config, into);
    return restoreBackup({ config, source: name, target, backup, store: fx.store, executor: fx.executor(target), redis: fx.redis, logger: silentLogger });
  };

  void test('round trip: objects deleted after the backup come back, objects created after it are gone, the rest is as it was', async () => {
    await waitFor('vpxd to write events', async () => (await vc1.readSequences()).vcdb > 3);
    await vc1.sql('vcdb', "INSERT INTO vpx_entity (name, type) VALUES ('vm-deleted-after-backup', 'vm'), ('vm-untouched', 'vm');");
    await vc1.sql('inventory', "SET ROLE vc; CREATE TABLE inv_object (name text PRIMARY KEY, kind text NOT NULL); INSERT INTO inv_object VALUES ('tag-deleted-after-backup', 'tag'), ('tag-untouched', 'tag');");

    first = await fx.backup('vc1');
    const seq = await dumpSequences(fx, first);
    assert.equal(seq.vcdb, seq.inventory, 'the quiesced pair agrees');
    const at = {
      entities: await checksum(vc1, 'vcdb', 'vpx_entity'),
      objects: await checksum(vc1, 'inventory', 'inv_object'),
      // vpxd only appends: events up to the backup's sequence are what the backup holds.
      events: await checksum(vc1, 'vcdb', 'vpx_event', `seq <= ${seq.vcdb}`),
    };

    // Life goes on after the backup: the write-up's experiment.
    await vc1.sql('vcdb', "DELETE FROM vpx_entity WHERE name = 'vm-deleted-after-backup'; INSERT INTO vpx_entity (name, type) VALUES ('vm-created-after-backup', 'vm'); DELETE FROM vpx_event WHERE seq <= 2;");
    await vc1.sql('inventory', "DELETE FROM inv_object WHERE name = 'tag-deleted-after-backup'; INSERT INTO inv_object VALUES ('tag-created-after-backup', 'tag');");
    const moved = await waitFor('vpxd to move well past the backup', async () => {
      const s = await vc1.readSequences();
      return s.vcdb > seq.vcdb + 40 && s.inventory > seq.vcdb + 40 ? s : null;
    }, 15_000);
    const auditBefore = (await readAudit(fx.auditLog)).length;

    // The databases as the restore left them, read just before it starts the first service:
    // nothing writes to them then, so the values cannot race vpxd.
    const config = fx.config();
    const target = fx.target(config, 'vc1');
    const restoring = captureBeforeFirstStart(fx.executor(target), () => vc1.readSequences());
    const outcome = await restoreBackup({ config, source: 'vc1', target, backup: 'latest', store: fx.store, executor: restoring.executor, redis: fx.redis, logger: silentLogger });
    assert.equal(outcome.id, first.manifest.id);
    assert.deepEqual(outcome.restored, ['vcdb', 'inventory']);
    assert.equal(await vc1.servicesRunning(), true);

    assert.deepEqual(await names(vc1, 'vcdb', 'vpx_entity'), ['Cluster01', 'Datacenter', 'esx01.lab.local', 'esx02.lab.local', 'vm-app01', 'vm-db01', 'vm-deleted-after-backup', 'vm-untouched', 'vm-web01']);
    assert.deepEqual(await names(vc1, 'inventory', 'inv_object'), ['tag-deleted-after-backup', 'tag-untouched']);
    assert.equal(await checksum(vc1, 'vcdb', 'vpx_entity'), at.entities);
    assert.equal(await checksum(vc1, 'inventory', 'inv_object'), at.objects);
    assert.equal(await checksum(vc1, 'vcdb', 'vpx_event', `seq <= ${seq.vcdb}`), at.events);
    // Both databases went back to the backup's own sequences exactly (vpxd had moved well past them).
    assert.deepEqual(restoring.captured(), seq, `both databases went back: ${JSON.stringify({ moved, backup: seq })}`);
    assert.ok(moved.vcdb > seq.vcdb && moved.inventory > seq.inventory);

    const audit = (await readAudit(fx.auditLog)).slice(auditBefore).filter((e) => e.appliance === vc1.name);
    assert.deepEqual(audit.map((e) => `${e.service}:${e.state}`), [
      'vmware-vpxd:stopped', 'vmware-inventoryservice:stopped', 'vmware-inventoryservice:running', 'vmware-vpxd:running',
    ]);
    assert.deepEqual(await fx.redis.hgetall(`${fx.prefix}:lease:holders`), {}, 'fleet slot freed');
    assert.equal(await fx.redis.exists(targetLockKey(fx.prefix, 'vc1')), 0, 'target lock released');
  });

  void test('--into restores one appliance\'s backup onto another', async () => {
    assert.equal((await vc2.sql('inventory', "SELECT to_regclass('public.inv_object') IS NULL;")).trim(), 't', 'vc2 starts without the objects');
    const outcome = await restore('vc1', first.manifest.id, 'vc2');
    assert.equal(outcome.target, 'vc2');
    assert.ok((await names(vc2, 'vcdb', 'vpx_entity')).includes('vm-untouched'));
    assert.deepEqual(await names(vc2, 'inventory', 'inv_object'), ['tag-deleted-after-backup', 'tag-untouched']);
    assert.equal(await vc2.servicesRunning(), true);
  });

  void test('an in-place restore that fails after the swap swaps the VCDB back, says so, and the services come back', async () => {
    const auditBefore = (await readAudit(fx.auditLog)).length;
    const vcdbBefore = await checksum(vc1, 'vcdb', 'vpx_entity');
    // INVSVC_DB empty: the inventory database is restored in place by restore.sh, as on a real 5.5.
    const err = await restore('vc1', 'latest', 'vc1', {
      targets: [{ name: 'vc1', profile: 'vcsa-5.5', executor: { type: 'local' }, variables: { ...vc1.variables, INVSVC_DB: '', INVSVC_SCRIPTS: `${vc1.root}/no/such/scripts` } }],
    }).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof BackupError, String(err));
    assert.equal(err.code, 'RESTORE_FAILED');
    assert.match(err.message, /restored: none; not restored: vcdb \(swapped back\); inventory \(.*restore\.sh.*\)/);
    assert.equal(await checksum(vc1, 'vcdb', 'vpx_entity'), vcdbBefore, 'the VCDB is the one from before the restore');
    assert.equal((await vc1.sql('vcdb', `SELECT count(*) FROM pg_database WHERE datname LIKE '${vc1.vcdbName}\\_restore\\_%';`)).trim(), '0', 'the loaded copy is dropped');
    assert.match(err.message, /services are running again/);
    assert.equal(await vc1.servicesRunning(), true);
    const audit = (await readAudit(fx.auditLog)).slice(auditBefore).filter((e) => e.appliance === vc1.name);
    assert.equal(audit.at(-1)?.state, 'running');
    assert.deepEqual(await fx.redis.hgetall(`${fx.prefix}:lease:holders`), {}, 'fleet slot freed once services were confirmed');
  });

  void test('one byte changed in S3 is caught before any service is stopped', async () => {
    const artifact = first.manifest.artifacts.find((a) => a.name === 'inventory')!;
    const raw = rawS3Client(fx.s3);
    try {
      const got = await raw.send(new GetObjectCommand({ Bucket: fx.s3.bucket, Key: artifact.key }));
      const body = Buffer.from(await got.Body!.transformToByteArray());
      body[Math.floor(body.length / 2)]! ^= 0x01;
      await raw.send(new PutObjectCommand({ Bucket: fx.s3.bucket, Key: artifact.key, Body: body }));
    } finally {
      raw.destroy();
    }
    const auditBefore = (await readAudit(fx.auditLog)).length;
    await assert.rejects(restore('vc1', first.manifest.id), (e: unknown) => {
      assert.ok(e instanceof BackupError);
      assert.equal(e.code, 'RESTORE_CHECKSUM_MISMATCH');
      assert.match(e.message, /inventory_services\.DB\.gz does not match its manifest.*Nothing on the appliance was touched/);
      return true;
    });
    const audit = (await readAudit(fx.auditLog)).slice(auditBefore);
    assert.deepEqual(audit.filter((e) => e.state === 'stopped'), [], 'no service was stopped');
    assert.equal(await vc1.servicesRunning(), true);
    assert.equal(await fx.redis.exists(targetLockKey(fx.prefix, 'vc1')), 0, 'no lock taken');
  });

  void test('an unknown backup id is bad input naming the ids that exist', async () => {
    await assert.rejects(restore('vc1', '20000101T000000.000Z'), (e: unknown) => {
      assert.ok(e instanceof BackupError);
      assert.equal(e.code, 'BACKUP_NOT_FOUND');
      assert.equal(e.permanent, true);
      assert.ok(e.message.includes(first.manifest.id), e.message);
      return true;
    });
  });
});
