import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { BackupOutcome } from '../../src/backup/run-backup.ts';
import { BackupError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { listKept, pruneKept, rollbackRestore } from '../../src/restore/kept-databases.ts';
import { restoreBackup, type RestoreOutcome } from '../../src/restore/restore.ts';
import type { SimAppliance } from '../../src/sim/appliance.ts';
import { readAudit } from '../../src/sim/audit.ts';
import { defaultPgBin, psql } from '../../src/sim/postgres.ts';
import { waitFor } from '../support/fleet.ts';
import { createFixture, type Fixture } from './fixture.ts';

const admin = 'postgres://postgres@127.0.0.1:5432/postgres';
const on = (db: string): string => `postgres://postgres@127.0.0.1:5432/${encodeURIComponent(db)}`;
const lines = (text: string): string[] => text.split('\n').filter((l) => l !== '');

async function tables(url: string): Promise<string[]> {
  return lines(await psql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1;"));
}

/** Every database on the server whose name starts with one of the appliance's databases. */
async function derivedDatabases(sim: SimAppliance): Promise<string[]> {
  const all = lines(await psql(admin, 'SELECT datname FROM pg_database ORDER BY 1;'));
  return all.filter((d) => d !== sim.vcdbName && d !== sim.inventoryDbName && (d.startsWith(`${sim.vcdbName}_`) || d.startsWith(`${sim.inventoryDbName}_`)));
}

void describe('restore by swap onto a simulated VCSA 5.5 whose schema changed since the backup', () => {
  let fx: Fixture;
  let vc1: SimAppliance;
  let backup: BackupOutcome;
  let restored: RestoreOutcome;
  let atBackup: string[];

  before(async () => {
    fx = await createFixture(['vc1']);
    vc1 = fx.appliances.get('vc1')!;
  });
  after(async () => {
    await fx?.close();
  });

  const restore = (overrides: { spaceFactor?: number; backup?: string } = {}): Promise<RestoreOutcome> => {
    const config = fx.config();
    const target = fx.target(config, 'vc1');
    return restoreBackup({ config, source: 'vc1', target, backup: overrides.backup ?? backup.manifest.id, store: fx.store, executor: fx.executor(target), redis: fx.redis, logger: silentLogger, ...(overrides.spaceFactor !== undefined ? { spaceFactor: overrides.spaceFactor } : {}) });
  };
  const kept = () => {
    const config = fx.config();
    const target = fx.target(config, 'vc1');
    return { config, target, executor: fx.executor(target), logger: silentLogger };
  };

  void test("the issue's experiment: a table dropped after the backup is back, one created after it is gone, owners and vpxd as before", async () => {
    await vc1.sql('vcdb', "SET ROLE vc; CREATE TABLE ante_diluvium (id int PRIMARY KEY, note text); INSERT INTO ante_diluvium VALUES (1, 'from before the flood');");
    backup = await fx.backup('vc1');
    atBackup = await tables(vc1.vcdbUrl);
    const seqAtBackup = Number((await psql(vc1.vcdbUrl, 'SELECT max(seq) FROM vpx_event;')).trim());
    await vc1.sql('vcdb', 'SET ROLE vc; DROP TABLE ante_diluvium; CREATE TABLE post_diluvium (id int);');
    const auditBefore = (await readAudit(fx.auditLog)).length;

    restored = await restore();
    assert.deepEqual(restored.restored, ['vcdb', 'inventory']);
    assert.deepEqual(await tables(vc1.vcdbUrl), atBackup, 'exactly the schema of the backup');
    assert.ok(atBackup.includes('ante_diluvium') && !atBackup.includes('post_diluvium'));
    assert.equal((await vc1.sql('vcdb', 'SELECT note FROM ante_diluvium;')).trim(), 'from before the flood');

    // The database it replaced is kept, as it was just before the restore.
    assert.deepEqual(restored.kept.map((k) => k.artifact), ['vcdb', 'inventory']);
    const keptVcdb = restored.kept.find((k) => k.artifact === 'vcdb')!;
    assert.equal(keptVcdb.keptAs, `${vc1.vcdbName}_before_${restored.run}`);
    assert.ok((await tables(on(keptVcdb.keptAs))).includes('post_diluvium'));
    assert.deepEqual(await derivedDatabases(vc1), restored.kept.map((k) => k.keptAs).sort(), 'no <db>_restore_ database left');

    // Owners as on the appliance: vc owns the databases and every table.
    assert.deepEqual(lines(await psql(admin, `SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname IN ('${vc1.vcdbName}', '${vc1.inventoryDbName}');`)), ['vc', 'vc']);
    assert.equal((await vc1.sql('vcdb', "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> 'vc';")).trim(), '0');

    // vpxd was restarted onto the restored database by name and keeps writing to it.
    const events = await waitFor('vpxd to write to the restored VCDB', async () => {
      const n = Number((await vc1.sql('vcdb', 'SELECT max(seq) FROM vpx_event;')).trim());
      return n > seqAtBackup + 5 ? n : null;
    }, 20_000);
    assert.ok(events > seqAtBackup);
    const sessions = lines(await psql(admin, `SELECT datname FROM pg_stat_activity WHERE application_name = 'vcsa-sim ${vc1.name} vmware-vpxd';`));
    assert.deepEqual(sessions, [vc1.vcdbName]);
    assert.deepEqual((await readAudit(fx.auditLog)).slice(auditBefore).filter((e) => e.appliance === vc1.name).map((e) => `${e.service}:${e.state}`), [
      'vmware-vpxd:stopped', 'vmware-inventoryservice:stopped', 'vmware-inventoryservice:running', 'vmware-vpxd:running',
    ]);
  });

  void test('rollback swaps the kept databases back; what it replaced is kept in turn', async () => {
    const outcome = await rollbackRestore({ ...kept(), redis: fx.redis, run: restored.run });
    assert.equal(outcome.from, restored.run);
    assert.ok((await tables(vc1.vcdbUrl)).includes('post_diluvium'), 'the database from before the restore is back');
    assert.ok(!(await tables(vc1.vcdbUrl)).includes('ante_diluvium'));
    assert.equal(await vc1.servicesRunning(), true);
    const list = await listKept(kept());
    assert.deepEqual(list.map((k) => k.kept).sort(), outcome.swapped.map((s) => s.keptAs).sort(), 'the restored databases are now the kept ones');
    assert.deepEqual((await tables(on(outcome.swapped.find((s) => s.artifact === 'vcdb')!.keptAs))), atBackup);
    assert.deepEqual(await fx.redis.hgetall(`${fx.prefix}:lease:holders`), {}, 'fleet slot freed');
  });

  void test('prune-kept drops kept databases older than N days, and no others', async () => {
    const before = await listKept(kept());
    assert.equal(before.length, 2);
    const young = await pruneKept({ ...kept(), redis: fx.redis, olderThanDays: 1 });
    assert.deepEqual(young.dropped, []);
    assert.equal((await listKept(kept())).length, 2);
    const later = new Date(Date.now() + 2 * 86_400_000);
    const dry = await pruneKept({ ...kept(), redis: fx.redis, olderThanDays: 1, now: later, dryRun: true });
    assert.equal(dry.dropped.length, 2);
    assert.equal((await listKept(kept())).length, 2, 'a dry run drops nothing');
    const old = await pruneKept({ ...kept(), redis: fx.redis, olderThanDays: 1, now: later });
    assert.deepEqual(old.dropped.map((k) => k.kept).sort(), before.map((k) => k.kept).sort());
    assert.deepEqual(await derivedDatabases(vc1), []);
    await assert.rejects(rollbackRestore({ ...kept(), redis: fx.redis }), (e: unknown) => e instanceof BackupError && e.code === 'ROLLBACK_NOTHING_KEPT');
  });

  void test('not enough free space: refused before anything is stopped or created, saying how much is needed', async () => {
    const auditBefore = (await readAudit(fx.auditLog)).length;
    await assert.rejects(restore({ spaceFactor: 1e9 }), (e: unknown) => {
      assert.ok(e instanceof BackupError, String(e));
      assert.equal(e.code, 'RESTORE_NO_SPACE');
      assert.match(e.message, /has [\d.]+ [KMGT]?i?B free, the restore needs [\d.]+ [KMGT]?i?B \(.*vcdb database.*\); free [\d.]+ [KMGT]?i?B more/);
      return true;
    });
    assert.equal((await readAudit(fx.auditLog)).length, auditBefore, 'no service stopped');
    assert.deepEqual(await derivedDatabases(vc1), []);
  });

  void test('a load that fails changes nothing and leaves no database behind', async () => {
    // A table owned by a role that is gone by restore time (as on a freshly installed appliance).
    const ghost = `ghost_${randomBytes(4).toString('hex')}`;
    await psql(admin, `CREATE ROLE ${ghost};`);
    await vc1.sql('vcdb', `CREATE TABLE haunted (id int); ALTER TABLE haunted OWNER TO ${ghost}; GRANT SELECT ON haunted TO vc;`);
    const haunted = await fx.backup('vc1');
    await vc1.sql('vcdb', 'DROP TABLE haunted;');
    await psql(admin, `DROP ROLE ${ghost};`);
    const schema = await tables(vc1.vcdbUrl);
    const auditBefore = (await readAudit(fx.auditLog)).length;

    await assert.rejects(restore({ backup: haunted.manifest.id }), (e: unknown) => {
      assert.ok(e instanceof BackupError, String(e));
      assert.equal(e.code, 'RESTORE_LOAD_FAILED');
      assert.match(e.message, new RegExp(`${ghost}.*does not exist.*Nothing was changed`, 's'));
      return true;
    });
    assert.equal((await readAudit(fx.auditLog)).length, auditBefore, 'no service stopped');
    assert.deepEqual(await tables(vc1.vcdbUrl), schema, 'the VCDB is unchanged');
    assert.deepEqual(await derivedDatabases(vc1), [], 'no stray database');
    assert.equal(await vc1.servicesRunning(), true);
  });
});

void describe('restore by swap: the database keeps its owner, encoding, collation, privileges and settings', () => {
  let fx: Fixture;
  const suffix = randomBytes(4).toString('hex');
  const db = `swapset_${suffix}`;
  const owner = `swapset_owner_${suffix}`;
  const reader = `swapset_reader_${suffix}`;

  before(async () => {
    fx = await createFixture([]);
    await psql(admin, `CREATE ROLE ${owner}; CREATE ROLE ${reader};`);
    await psql(admin, `CREATE DATABASE ${db} OWNER ${owner} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 CONNECTION LIMIT 7;`);
    await psql(admin, [
      `REVOKE ALL ON DATABASE ${db} FROM PUBLIC;`,
      `GRANT CONNECT ON DATABASE ${db} TO ${reader};`,
      `ALTER DATABASE ${db} SET search_path = app, public;`,
      `ALTER ROLE ${reader} IN DATABASE ${db} SET work_mem = '8MB';`,
      `COMMENT ON DATABASE ${db} IS 'what the appliance calls it';`,
    ].join('\n'));
    await psql(on(db), `SET ROLE ${owner}; CREATE SCHEMA app; CREATE TABLE app.item (id int PRIMARY KEY, name text); INSERT INTO app.item VALUES (1, 'Zürich'); GRANT USAGE ON SCHEMA app TO ${reader}; GRANT SELECT ON app.item TO ${reader};`);
  });
  after(async () => {
    const left = lines(await psql(admin, `SELECT datname FROM pg_database WHERE datname LIKE '${db}%';`));
    for (const d of left) await psql(admin, `DROP DATABASE IF EXISTS "${d}" WITH (FORCE);`);
    await psql(admin, `DROP ROLE IF EXISTS ${reader}; DROP ROLE IF EXISTS ${owner};`).catch(() => undefined);
    await fx?.close();
  });

  const describeDb = async (): Promise<string> =>
    (await psql(admin, [
      `SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype, datconnlimit, shobj_description(oid, 'pg_database'),`,
      `  (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(datacl) a),`,
      `  (SELECT string_agg(coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '*') || ':' || array_to_string(s.setconfig, ';'), ',' ORDER BY 1) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid)`,
      `FROM pg_database d WHERE datname = '${db}';`,
    ].join('\n'))).trim();

  void test('owner, encoding, collation, connection limit, privileges, settings, comment and table grants match the original', async () => {
    const targets = [{ name: 'pg1', profile: 'postgres', executor: { type: 'local' }, variables: { PG_BIN: defaultPgBin, PGDATABASE: db } }];
    const original = await describeDb();
    const tableAcl = "SELECT tableowner, (SELECT relacl::text FROM pg_class WHERE oid = 'app.item'::regclass) FROM pg_tables WHERE tablename = 'item';";
    const originalTable = await psql(on(db), tableAcl);
    const backup = await fx.backup('pg1', { targets });
    await psql(on(db), "DELETE FROM app.item; CREATE TABLE app.later (id int);");

    const config = fx.config({ targets });
    const target = fx.target(config, 'pg1');
    const outcome = await restoreBackup({ config, source: 'pg1', target, backup: backup.manifest.id, store: fx.store, executor: fx.executor(target), redis: fx.redis, logger: silentLogger });
    assert.equal(outcome.kept.length, 1);
    assert.equal(await describeDb(), original, 'the database object is the same to its clients');
    assert.match(original, /LATIN1\|C\|C\|7\|what the appliance calls it\|/);
    assert.equal(await psql(on(db), tableAcl), originalTable);
    assert.equal((await psql(on(db), 'SELECT name FROM app.item;')).trim(), 'Zürich');
    assert.equal((await psql(on(db), "SELECT to_regclass('app.later') IS NULL;")).trim(), 't');
    // The reader can use what it was granted, through the database's own search_path.
    assert.equal((await psql(on(db), `SET ROLE ${reader}; SHOW search_path; SELECT count(*) FROM item;`)).trim().split('\n').join('|'), 'app, public|1');
  });
});
