import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { builtinProfiles } from '../../src/profiles/builtin.ts';
import { bindProfile, restoreCommand, type ResolvedProfile } from '../../src/profiles/render.ts';
import { createSimAppliance, type SimAppliance } from '../../src/sim/appliance.ts';
import { dumpPairSequences, vcdbSequenceFromSql } from '../../src/sim/dump-sequences.ts';
import { bash, waitFor } from './helpers.ts';

/**
 * The vcsa-5.5 profile, unchanged but for ROOT and SERVICE, against a simulated appliance: its
 * dumps of a running appliance disagree, its quiesced dumps agree, its restores round-trip.
 */
void describe('vcsa-5.5 profile against a simulated appliance', () => {
  let dir: string;
  let sim: SimAppliance;
  let profile: ResolvedProfile;

  const run = async (command: string): Promise<Buffer> => {
    const res = await bash(command);
    assert.equal(res.exitCode, 0, `${command}\n${res.stderr}`);
    return res.stdout;
  };
  const dumpPair = async (): Promise<{ vcdb: number; inventory: number }> => {
    const [vcdb, inventory] = profile.dumps;
    const vcdbSql = await run(vcdb!.dump);
    const archive = await run(inventory!.dump);
    return dumpPairSequences(vcdbSql, archive);
  };
  const stopAll = async (): Promise<void> => {
    for (const s of profile.services) await run(s.stop);
  };
  const startAll = async (): Promise<void> => {
    for (const s of [...profile.services].reverse()) await run(s.start);
    for (const s of profile.services) await run(s.status);
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sim-consistency-'));
    sim = await createSimAppliance({ name: `cons-${process.pid}`, baseDir: dir, auditLog: join(dir, 'audit.jsonl') });
    profile = bindProfile(builtinProfiles.get('vcsa-5.5')!, sim.variables);
  });

  after(async () => {
    await sim?.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  void test('a dump pair taken while the services run disagrees', async () => {
    await waitFor('vpxd to write some events', async () => (await sim.readSequences()).vcdb > 3);
    const [vcdb, inventory] = profile.dumps;
    const vcdbSql = await run(vcdb!.dump);
    const taken = vcdbSequenceFromSql(vcdbSql);
    // What a running appliance does between two dumps, made certain rather than hoped for: vpxd
    // writes on, and the inventory service mirrors it past the moment of the first dump.
    await waitFor('vpxd\'s progress to reach the inventory database past the VCDB dump', async () => (await sim.readSequences()).inventory > taken);
    const pair = await dumpPairSequences(vcdbSql, await run(inventory!.dump));
    assert.ok(pair.vcdb > 3);
    assert.ok(pair.inventory > pair.vcdb, `the pair disagrees: ${JSON.stringify(pair)}`);
  });

  void test('a dump pair taken after stopping vpxd, then the inventory service, agrees', async () => {
    await stopAll();
    try {
      assert.equal(await sim.servicesRunning(), false);
      const pair = await dumpPair();
      assert.ok(pair.vcdb > 0);
      assert.equal(pair.inventory, pair.vcdb);
      assert.deepEqual(await sim.readSequences(), pair);
    } finally {
      await startAll();
    }
    assert.equal(await sim.servicesRunning(), true);
  });

  void test('stopping in the wrong order leaves the pair inconsistent', async () => {
    // Proves the agreement above comes from the stop order, not from stopping as such.
    const [vpxd, inventory] = profile.services;
    await run(inventory!.stop);
    const seen = (await sim.readSequences()).inventory;
    await waitFor('vpxd to move on', async () => (await sim.readSequences()).vcdb > seen);
    await run(vpxd!.stop);
    try {
      const pair = await dumpPair();
      assert.ok(pair.vcdb > pair.inventory, JSON.stringify(pair));
    } finally {
      await startAll();
    }
  });

  void test('the profile restores a VCDB dump and backup.sh/restore.sh round-trip the inventory database', async () => {
    await stopAll();
    const vcdbFile = join(dir, 'postgres.sql');
    const invFile = join(dir, 'inventory_services.DB');
    let snapshot: { vcdb: number; inventory: number };
    try {
      await writeFile(vcdbFile, await run(profile.dumps[0]!.dump));
      await writeFile(invFile, await run(profile.dumps[1]!.dump));
      snapshot = await sim.readSequences();
      assert.equal(vcdbSequenceFromSql(await run(`cat ${vcdbFile}`)), snapshot.vcdb);
    } finally {
      await startAll();
    }
    // The appliance lives on after the backup: new events, a new object, a deleted object.
    await waitFor('both databases to move on', async () => {
      const now = await sim.readSequences();
      return now.vcdb > snapshot.vcdb && now.inventory > snapshot.inventory;
    });
    await sim.sql('vcdb', "INSERT INTO vpx_entity (name, type) VALUES ('vm-created-after-backup', 'vm'); DELETE FROM vpx_entity WHERE name = 'vm-db01';");

    await stopAll();
    try {
      await run(restoreCommand(profile.dumps[0]!, vcdbFile));
      await run(restoreCommand(profile.dumps[1]!, invFile));
      assert.deepEqual(await sim.readSequences(), snapshot);
      const names = (await sim.sql('vcdb', 'SELECT name FROM vpx_entity ORDER BY name;')).trim().split('\n');
      assert.ok(names.includes('vm-db01'), 'the deleted object is back');
      assert.ok(!names.includes('vm-created-after-backup'), 'the object created after the backup is gone');
    } finally {
      await startAll();
    }
    await waitFor('vpxd to write after the restore', async () => (await sim.readSequences()).vcdb > snapshot.vcdb);
  });

  void test('backup.sh and restore.sh fail loudly and restore.sh changes nothing on a bad archive', async () => {
    const scripts = profile.variables['INVSVC_SCRIPTS']!;
    const badTarget = await bash(`${scripts}/backup.sh -file ${dir}/no/such/dir/inv.DB`);
    assert.notEqual(badTarget.exitCode, 0);
    assert.match(badTarget.stderr, /backup\.sh: backup of the inventory database .* failed/);
    const usage = await bash(`${scripts}/backup.sh`);
    assert.equal(usage.exitCode, 1);
    assert.match(usage.stderr, /usage: backup\.sh -file FILE/);

    const garbage = join(dir, 'garbage.DB');
    await writeFile(garbage, 'this is not a pg_dump archive\n');
    await stopAll();
    try {
      const before = await sim.readSequences();
      const bad = await bash(`${scripts}/restore.sh -backup ${garbage}`);
      assert.notEqual(bad.exitCode, 0);
      assert.match(bad.stderr, /restore\.sh: restore of .* failed; nothing was changed/);
      assert.deepEqual(await sim.readSequences(), before);
    } finally {
      await startAll();
    }
  });
});
