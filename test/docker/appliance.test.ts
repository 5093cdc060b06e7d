/**
 * The simulated VCSA 5.5 as a container (appliance/Dockerfile): the real vcsa-5.5 profile, with
 * no variable overrides, backs it up and restores it over `docker exec` and over SSH; a stopped
 * container and a command missing inside it fail clearly and leave the appliance as it was.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Redis } from 'ioredis';
import { runBackup, type BackupOutcome } from '../../src/backup/run-backup.ts';
import { parseConfig, type Config } from '../../src/config/load.ts';
import { BackupError } from '../../src/errors.ts';
import { createExecutor } from '../../src/executors/index.ts';
import type { Executor } from '../../src/executors/executor.ts';
import { silentLogger } from '../../src/log.ts';
import { restoreBackup } from '../../src/restore/restore.ts';
import { inventorySequenceFromArchive, vcdbSequenceFromSql } from '../../src/sim/dump-sequences.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { captureBeforeFirstStart } from '../support/before-first-start.ts';
import { dockerCli, startApplianceContainer, waitFor, type ApplianceContainer } from './appliance-container.ts';

const suffix = randomBytes(4).toString('hex');
const prefix = `test-docker-appliance-${suffix}`;
let dir: string;
let s3: EmbeddedS3;
let store: ObjectStore;
let redis: Redis;
const containers: ApplianceContainer[] = [];
const executors: Executor[] = [];

function configFor(appliance: ApplianceContainer, executor: 'docker' | 'ssh'): Config {
  const exec =
    executor === 'docker'
      ? { type: 'docker', container: appliance.name }
      : { type: 'ssh', host: '127.0.0.1', port: appliance.ssh?.port, user: 'root', knownHosts: appliance.ssh?.knownHostsPath, privateKey: { file: appliance.ssh?.privateKeyPath } };
  return parseConfig(
    {
      redis: { url: 'redis://127.0.0.1:6379', prefix },
      s3: { bucket: s3.bucket, prefix: 'vcsa', endpoint: s3.endpoint, forcePathStyle: true, checksums: 'when-required', partSizeMiB: 5, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      spool: { dir: join(dir, 'spool'), minFreeMiB: 0 },
      quiesce: { leaseSeconds: 30, waitSeconds: 30 },
      retention: { afterBackup: false },
      // The real profile as it ships: the container has the real appliance's paths.
      targets: [{ name: appliance.name, profile: 'vcsa-5.5', executor: exec }],
    },
    { env: {} },
  );
}

function executorFor(config: Config): Executor {
  const target = config.targets[0];
  assert.ok(target);
  const executor = createExecutor(target.executor, silentLogger);
  executors.push(executor);
  return executor;
}

async function listed(keyPrefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of store.list(keyPrefix)) keys.push(object.key);
  return keys;
}

async function names(appliance: ApplianceContainer, db: 'VCDB' | 'invsvc', table: string): Promise<string[]> {
  return (await appliance.sql(db, `SELECT name FROM ${table} ORDER BY name;`)).split('\n').filter((l) => l !== '');
}

async function dumpSequences(outcome: BackupOutcome): Promise<{ vcdb: number; inventory: number }> {
  const vcdb = outcome.manifest.artifacts.find((a) => a.name === 'vcdb');
  const inv = outcome.manifest.artifacts.find((a) => a.name === 'inventory');
  assert.ok(vcdb && inv, 'both dumps in the manifest');
  return {
    vcdb: vcdbSequenceFromSql(gunzipSync(await store.getBytes(vcdb.key)).toString('utf8')),
    inventory: await inventorySequenceFromArchive(gunzipSync(await store.getBytes(inv.key))),
  };
}

/** Backup, changes on the appliance, restore: the appliance's data is the backup's again. */
async function roundTrip(appliance: ApplianceContainer, executorKind: 'docker' | 'ssh'): Promise<void> {
  const config = configFor(appliance, executorKind);
  const target = config.targets[0];
  assert.ok(target);
  await waitFor('vpxd to write events', async () => (await appliance.readSequences()).vcdb > 3);
  const auditAtStart = (await appliance.audit()).length;
  await appliance.sql('VCDB', "INSERT INTO vpx_entity (name, type) VALUES ('vm-deleted-after-backup', 'vm'), ('vm-untouched', 'vm');");
  await appliance.sql('invsvc', "SET ROLE vc; CREATE TABLE inv_object (name text PRIMARY KEY); INSERT INTO inv_object VALUES ('tag-deleted-after-backup'), ('tag-untouched');");

  const backup = await runBackup({ config, target, executor: executorFor(config), store, logger: silentLogger });
  assert.deepEqual(backup.manifest.artifacts.map((a) => a.name), ['vcdb', 'inventory']);
  const seq = await dumpSequences(backup);
  assert.ok(seq.vcdb > 3, `the VCDB dump holds vpxd's events (${seq.vcdb})`);
  assert.equal(seq.inventory, seq.vcdb, 'quiesced: the inventory database mirrors the VCDB exactly');
  assert.equal(await appliance.servicesRunning(), true, 'services running after the backup');
  const backupAudit = (await appliance.audit()).slice(auditAtStart).map((e) => `${e.service}:${e.state}`);
  assert.deepEqual(backupAudit, ['vmware-vpxd:stopped', 'vmware-inventoryservice:stopped', 'vmware-inventoryservice:running', 'vmware-vpxd:running']);

  await appliance.sql('VCDB', "DELETE FROM vpx_entity WHERE name = 'vm-deleted-after-backup'; INSERT INTO vpx_entity (name, type) VALUES ('vm-created-after-backup', 'vm');");
  await appliance.sql('invsvc', "DELETE FROM inv_object WHERE name = 'tag-deleted-after-backup'; INSERT INTO inv_object VALUES ('tag-created-after-backup');");
  const moved = await waitFor('vpxd to move past the backup', async () => {
    const s = await appliance.readSequences();
    return s.vcdb > seq.vcdb + 20 && s.inventory > seq.vcdb + 20 ? s : null;
  });
  const auditBefore = (await appliance.audit()).length;

  // The databases as the restore left them, read just before it starts the first service: nothing
  // writes to them then, so the values cannot race vpxd's clock.
  const restoring = captureBeforeFirstStart(executorFor(config), async () => ({ ...(await appliance.readSequences()), servicesRunning: await appliance.servicesRunning() }));
  const restored = await restoreBackup({ config, source: target.name, target, backup: 'latest', store, executor: restoring.executor, redis, logger: silentLogger });
  assert.equal(restored.id, backup.manifest.id);
  assert.deepEqual(restored.restored, ['vcdb', 'inventory']);

  assert.deepEqual(await names(appliance, 'VCDB', 'vpx_entity'), ['Cluster01', 'Datacenter', 'esx01.lab.local', 'esx02.lab.local', 'vm-app01', 'vm-db01', 'vm-deleted-after-backup', 'vm-untouched', 'vm-web01']);
  assert.deepEqual(await names(appliance, 'invsvc', 'inv_object'), ['tag-deleted-after-backup', 'tag-untouched']);
  // The VCDB went back to the backup's own sequence exactly (vpxd had moved past it), and the
  // inventory database with it.
  const atStart = restoring.captured();
  assert.deepEqual(atStart, { vcdb: seq.vcdb, inventory: seq.inventory, servicesRunning: false }, `restored while stopped: ${JSON.stringify({ backup: seq, moved, atStart })}`);
  assert.ok(moved.vcdb > seq.vcdb);
  assert.equal(await appliance.servicesRunning(), true, 'services running after the restore');
  await waitFor('vpxd writing again after the restore', async () => (await appliance.readSequences()).vcdb > seq.vcdb);
  const restoreAudit = (await appliance.audit()).slice(auditBefore).map((e) => `${e.service}:${e.state}`);
  assert.deepEqual(restoreAudit, ['vmware-vpxd:stopped', 'vmware-inventoryservice:stopped', 'vmware-inventoryservice:running', 'vmware-vpxd:running']);
  assert.deepEqual(await redis.hgetall(`${prefix}:lease:holders`), {}, 'fleet slot freed');
}

// One container serves every test but the SSH round trip (which needs sshd in it), in this order:
// its first start creates the databases, which takes a minute beside the rest of the suite. The
// tests that break it (pg_dump moved away, the container stopped) come last and put back what
// they can.
void describe('the simulated VCSA 5.5 container image', () => {
  let shared: ApplianceContainer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'docker-appliance-test-'));
    s3 = await startEmbeddedS3({ bucket: `docker-appliance-${suffix}` });
    store = createS3ObjectStore(
      parseConfig({ s3: { bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, checksums: 'when-required', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }, targets: [{ name: 'x', profile: 'postgres', executor: { type: 'local' } }] }, { env: {} }).s3,
      silentLogger,
    );
    redis = new Redis('redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 });
    shared = await startApplianceContainer({ dir });
    containers.push(shared);
  });

  after(async () => {
    await Promise.allSettled(executors.map((e) => e.close()));
    await Promise.allSettled(containers.map((c) => c.remove()));
    store?.close();
    if (redis) {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
    await s3?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void test('has the real VCSA 5.5 layout', async () => {
    const appliance = shared;
    const layout = await appliance.exec(
      'set -e; . /etc/vmware-vpx/embedded_db.cfg; echo "$EMB_DB_INSTANCE $EMB_DB_USER ${#EMB_DB_PASSWORD}"; command -v service; ' +
        'for f in /opt/vmware/vpostgres/1.0/bin/pg_dump /opt/vmware/vpostgres/1.0/bin/psql /usr/lib/vmware-vpx/inventoryservice/scripts/backup.sh /usr/lib/vmware-vpx/inventoryservice/scripts/restore.sh; do test -x "$f"; done; ' +
        '/opt/vmware/vpostgres/1.0/bin/pg_dump --version',
    );
    assert.equal(layout.exitCode, 0, layout.stderr);
    const [cfg, service, version] = layout.stdout.trim().split('\n');
    assert.match(cfg ?? '', /^VCDB vc \d{2,}$/);
    assert.equal(service, '/usr/sbin/service');
    assert.match(version ?? '', /PostgreSQL\) 15\./);
    assert.equal(await appliance.servicesRunning(), true);
    assert.deepEqual((await appliance.audit()).map((e) => `${e.service}:${e.state}`), ['vmware-inventoryservice:running', 'vmware-vpxd:running']);
    const health = JSON.parse((await dockerCli(['inspect', '-f', '{{json .Config.Healthcheck.Test}}', appliance.name])).stdout) as string[];
    assert.equal((await appliance.exec(health[1] ?? 'false')).exitCode, 0, 'the image\'s HEALTHCHECK passes');
    assert.equal((await appliance.exec('service vmware-vpxd stop && { ' + (health[1] ?? 'true') + '; }')).exitCode, 1, 'and fails with vpxd stopped');
    assert.equal((await appliance.exec('service vmware-vpxd start')).exitCode, 0);
  });

  void test('full backup and restore over docker exec (docker executor)', async () => {
    await roundTrip(shared, 'docker');
  });

  void test('full backup and restore over SSH (sshd in the container)', async () => {
    const appliance = await startApplianceContainer({ dir, ssh: true });
    containers.push(appliance);
    await roundTrip(appliance, 'ssh');
  });

  void test('pg_dump missing inside the appliance: a clear error, and the services are running again', async (t) => {
    const appliance = shared;
    const moved = await appliance.exec('mv /opt/vmware/vpostgres/1.0/bin/pg_dump /opt/vmware/vpostgres/1.0/bin/pg_dump.away');
    assert.equal(moved.exitCode, 0, moved.stderr);
    t.after(async () => {
      await appliance.exec('mv /opt/vmware/vpostgres/1.0/bin/pg_dump.away /opt/vmware/vpostgres/1.0/bin/pg_dump');
    });
    const auditBefore = (await appliance.audit()).length;
    const uploadedBefore = await listed(`vcsa/${appliance.name}/`);

    const config = configFor(appliance, 'docker');
    const target = config.targets[0];
    assert.ok(target);
    await assert.rejects(runBackup({ config, target, executor: executorFor(config), store, logger: silentLogger }), (err: unknown) => {
      assert.ok(err instanceof BackupError, String(err));
      assert.match(err.message, /exited with code 127: .*\/opt\/vmware\/vpostgres\/1\.0\/bin\/pg_dump: No such file or directory/);
      return true;
    });
    assert.equal(await appliance.servicesRunning(), true, 'both services running after the failed dump');
    const audit = (await appliance.audit()).slice(auditBefore).map((e) => `${e.service}:${e.state}`);
    assert.deepEqual(audit, ['vmware-vpxd:stopped', 'vmware-inventoryservice:stopped', 'vmware-inventoryservice:running', 'vmware-vpxd:running']);
    assert.deepEqual(await listed(`vcsa/${appliance.name}/`), uploadedBefore, 'nothing uploaded');
  });

  void test('a stopped appliance container: DOCKER_NOT_RUNNING, nothing started or stopped', async () => {
    const appliance = shared;
    const stop = await dockerCli(['stop', appliance.name]);
    assert.equal(stop.exitCode, 0, stop.stderr);
    const auditBefore = await appliance.audit();
    const uploadedBefore = await listed(`vcsa/${appliance.name}/`);
    assert.deepEqual(auditBefore.slice(-2).map((e) => `${e.service}:${e.state}`), ['vmware-vpxd:stopped', 'vmware-inventoryservice:stopped'], 'docker stop shut the services down in order');

    const config = configFor(appliance, 'docker');
    const target = config.targets[0];
    assert.ok(target);
    await assert.rejects(runBackup({ config, target, executor: executorFor(config), store, logger: silentLogger }), (err: unknown) => {
      assert.ok(err instanceof BackupError, String(err));
      assert.equal(err.code, 'DOCKER_NOT_RUNNING');
      assert.match(err.message, new RegExp(`container "${appliance.name}" is not running; start it with \`docker start ${appliance.name}\``));
      return true;
    });
    assert.equal(await appliance.running(), false, 'the backup did not start the container');
    assert.deepEqual(await appliance.audit(), auditBefore, 'no service changed state');
    assert.deepEqual(await listed(`vcsa/${appliance.name}/`), uploadedBefore, 'nothing uploaded');
  });
});
