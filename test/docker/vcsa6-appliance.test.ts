/**
 * The simulated VCSA 6.x as a container (the appliance image with VCSA_SIM_PROFILE=vcsa-6.x):
 * the vcsa-6.x profile as it ships (only VCDB_HOST points at the container's socket) backs it
 * up in snapshot mode over `docker exec`, the snapshot held open through an exec's stdin; the
 * dump is the VCDB at the stop although vpxd wrote past it before the dump began.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { runBackup } from '../../src/backup/run-backup.ts';
import { parseConfig } from '../../src/config/load.ts';
import { createExecutor } from '../../src/executors/index.ts';
import { silentLogger } from '../../src/log.ts';
import { vcdbSequenceFromSql } from '../../src/sim/dump-sequences.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { lastState, recordingExecutor } from '../support/recording-executor.ts';
import { s3ConfigFor } from '../support/s3.ts';
import { startApplianceContainer, waitFor, type ApplianceContainer } from './appliance-container.ts';

const suffix = randomBytes(4).toString('hex');
let dir: string;
let s3: EmbeddedS3;
let store: ObjectStore;
let appliance: ApplianceContainer | undefined;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'docker-vcsa6-'));
  s3 = await startEmbeddedS3({ bucket: `vcsa6-${suffix}` });
  store = createS3ObjectStore(s3ConfigFor(s3), silentLogger);
  appliance = await startApplianceContainer({ dir, profile: 'vcsa-6.x', namePrefix: 'vcsa6-sim' });
});

after(async () => {
  store?.close();
  await appliance?.remove();
  await s3?.stop();
  await rm(dir, { recursive: true, force: true });
});

const event = async (a: ApplianceContainer): Promise<number> => Number((await a.sql('VCDB', 'SELECT coalesce(max(seq), 0) FROM vpx_event;')).trim());

void test('vcsa-6.x in a container: service-control, vcdb.properties, vPostgres current; a snapshot backup over docker exec', async () => {
  const a = appliance!;
  const status = await a.exec('service-control --status vmware-vpxd; /opt/vmware/vpostgres/current/bin/pg_dump --version; grep -c "^password = " /etc/vmware-vpx/vcdb.properties');
  assert.equal(status.exitCode, 0, status.stderr);
  assert.match(status.stdout, /^Running:\n vmware-vpxd\npg_dump \(PostgreSQL\) 9\.6\.24 \(VMware Postgres [^)]+\)\n1\n$/);
  assert.equal((await a.exec('test -e /etc/vmware-vpx/embedded_db.cfg || service vmware-inventoryservice status')).exitCode, 1, 'a 6.x has no Inventory Service');
  await waitFor('vpxd to write events', async () => (await event(a)) > 3);

  const config = parseConfig(
    {
      s3: { bucket: s3.bucket, prefix: 'vcsa', endpoint: s3.endpoint, forcePathStyle: true, checksums: 'when-required', partSizeMiB: 5, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      spool: { dir: join(dir, 'spool'), minFreeMiB: 0 },
      retention: { afterBackup: false },
      targets: [{ name: a.name, profile: 'vcsa-6.x', executor: { type: 'docker', container: a.name }, variables: { VCDB_HOST: '/var/run/postgresql' } }],
    },
    { env: {} },
  );
  const target = config.targets[0]!;
  let atStop: number | undefined;
  const { executor, sent } = recordingExecutor(createExecutor(target.executor, silentLogger), () => a.audit(), {
    afterStop: async () => {
      atStop = await event(a);
    },
    beforeSnapshotDump: async () => {
      await waitFor('vpxd to write after the start', async () => (await event(a)) > (atStop ?? Infinity));
    },
  });
  const outcome = await runBackup({ config, target, executor, store, logger: silentLogger }).finally(() => executor.close());
  const m = outcome.manifest;
  assert.equal(m.profile, 'vcsa-6.x');
  assert.equal(m.quiesce?.mode, 'snapshot');
  const vcdb = m.artifacts.find((x) => x.name === 'vcdb');
  assert.ok(vcdb);
  assert.equal(vcdbSequenceFromSql(gunzipSync(await store.getBytes(vcdb.key))), atStop, 'the dump is the VCDB as the stop left it');
  const session = sent.find((s) => s.heldOpen);
  const dump = sent.find((s) => s.command.includes('--snapshot='));
  assert.ok(session && dump);
  assert.equal(lastState(session.auditBefore, 'vmware-vpxd'), 'stopped', 'exported while vpxd was stopped');
  assert.equal(lastState(dump.auditBefore, 'vmware-vpxd'), 'running', 'dumped after vpxd was running again');
  assert.equal(await a.servicesRunning(), true);
});
