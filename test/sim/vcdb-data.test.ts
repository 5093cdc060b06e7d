import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createSimAppliance, type SimAppliance } from '../../src/sim/appliance.ts';
import { defaultPgBin } from '../../src/sim/postgres.ts';
import { fillVcdb } from '../../src/sim/vcdb-data.ts';

/**
 * The realistic VCDB (`simulate --vcdb-mb`): about the size asked for, shaped like vCenter's
 * (statistics, events with arguments, tasks), and compressible like real data — neither zeros
 * nor one row repeated. Small on purpose: the ≥ 200 MiB run is test/backup/large-vcdb.test.ts.
 */
void describe('simulated VCDB data (--vcdb-mb)', () => {
  const mb = 32;
  let dir: string;
  let appliance: SimAppliance;
  let dump: Buffer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vcdb-data-'));
    appliance = await createSimAppliance({ name: 'vcdata', baseDir: dir, auditLog: join(dir, 'audit.jsonl'), vcdbMb: mb, start: false });
    const res = spawnSync(`${defaultPgBin}/pg_dump`, ['-Fp', '-c', '-d', appliance.vcdbUrl], { maxBuffer: 1024 * 1024 * 1024 });
    assert.equal(res.status, 0, res.stderr.toString());
    dump = res.stdout;
  });
  after(async () => {
    await appliance.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  void test('the database is about the size asked for', async () => {
    const bytes = Number((await appliance.sql('vcdb', 'SELECT pg_database_size(current_database());')).trim());
    const ratio = bytes / (mb * 1024 * 1024);
    assert.ok(ratio > 0.85 && ratio < 1.25, `database is ${(bytes / 1048576).toFixed(1)} MiB for --vcdb-mb ${mb}`);
  });

  void test('holds statistics, events with their arguments and tasks, with varied values', async () => {
    const one = async (q: string): Promise<number> => Number((await appliance.sql('vcdb', q)).trim());
    for (const table of ['vpx_hist_stat1', 'vpx_hist_stat2', 'vpx_hist_stat3', 'vpx_hist_stat4', 'vpx_event', 'vpx_event_arg', 'vpx_task']) {
      assert.ok((await one(`SELECT count(*) FROM ${table};`)) > 0, `${table} is empty`);
    }
    // Statistics are most of a real VCDB.
    const stats = await one("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relname LIKE 'vpx_hist_stat_' AND c.relkind = 'r';");
    const all = await one("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relname LIKE 'vpx_%' AND c.relkind = 'r';");
    assert.ok(stats / all > 0.4 && stats / all < 0.8, `statistics are ${((100 * stats) / all).toFixed(0)} % of the data`);
    assert.ok((await one('SELECT count(DISTINCT counter_id) FROM vpx_hist_stat1;')) >= 50);
    assert.ok((await one('SELECT count(DISTINCT stat_val) FROM vpx_hist_stat1;')) > 1000);
    assert.ok((await one('SELECT count(DISTINCT event_type) FROM vpx_event;')) >= 10);
    assert.ok((await one('SELECT count(DISTINCT vm_name) FROM vpx_event;')) > 500);
    assert.ok((await one('SELECT count(DISTINCT complete_state) FROM vpx_task;')) === 3);
    assert.equal(await one('SELECT count(*) FROM vpx_event_arg a LEFT JOIN vpx_event e ON e.seq = a.event_id WHERE e.seq IS NULL;'), 0, 'every argument belongs to an event');
    // Events continue one sequence that vpxd carries on from.
    assert.equal(await one('SELECT max(seq) - count(*) FROM vpx_event;'), 0);
  });

  void test('its dump compresses like a real one (gzip -6 between 4× and 12×)', () => {
    const ratio = dump.length / gzipSync(dump, { level: 6 }).length;
    assert.ok(dump.length > (mb * 1024 * 1024) / 5, `dump is only ${dump.length} bytes`);
    assert.ok(ratio > 4 && ratio < 12, `gzip ratio ${ratio.toFixed(2)}`);
  });

  void test('refuses a size that is not a whole number of MiB', async () => {
    await assert.rejects(fillVcdb(appliance.vcdbUrl, { mb: -1, owner: 'vc' }), { code: 'SIM_BAD_VCDB_SIZE' });
    await assert.rejects(fillVcdb(appliance.vcdbUrl, { mb: 1.5, owner: 'vc' }), { code: 'SIM_BAD_VCDB_SIZE' });
  });
});
