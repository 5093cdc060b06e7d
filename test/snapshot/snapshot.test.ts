import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { pino } from 'pino';
import type { Manifest } from '../../src/backup/manifest.ts';
import { runBackup } from '../../src/backup/run-backup.ts';
import { parseConfig, type Config, type TargetConfig } from '../../src/config/load.ts';
import { createExecutor } from '../../src/executors/index.ts';
import { silentLogger, type Logger } from '../../src/log.ts';
import { builtinProfiles } from '../../src/profiles/builtin.ts';
import type { Profile } from '../../src/profiles/profile.ts';
import { createSimAppliance, createSimVcsa6Appliance, type SimAppliance, type SimVcsa6Appliance } from '../../src/sim/appliance.ts';
import { readAudit, type AuditEntry } from '../../src/sim/audit.ts';
import { dumpPairSequences, vcdbSequenceFromSql } from '../../src/sim/dump-sequences.ts';
import { parsePgDumpVersion, supportsSnapshot } from '../../src/snapshot/pg-dump-version.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { waitFor } from '../support/poll.ts';
import { lastState, recordingExecutor } from '../support/recording-executor.ts';
import { s3ConfigFor } from '../support/s3.ts';

function capturingLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines: () => lines };
}

void describe('pg_dump --version', () => {
  void test('reads PostgreSQL and VMware Postgres version lines; 9.5 and later take --snapshot', () => {
    const cases: [string, string, boolean][] = [
      ['pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)', '15.14', true],
      ['pg_dump (PostgreSQL) 9.6.24 (VMware Postgres 9.6.24.0-sim release)', '9.6.24', true],
      ['pg_dump (PostgreSQL) 9.4.26 (VMware Postgres 9.4.26.0-4524154 release)', '9.4.26', false],
      ['pg_dump (PostgreSQL) 9.5.0', '9.5.0', true],
      ['pg_dump (PostgreSQL) 9.0.23', '9.0.23', false],
      ['pg_dump (PostgreSQL) 12.5', '12.5', true],
    ];
    for (const [line, text, snapshot] of cases) {
      const v = parsePgDumpVersion(`${line}\n`);
      assert.ok(v, line);
      assert.equal(v.text, text, line);
      assert.equal(supportsSnapshot(v), snapshot, line);
    }
    assert.equal(parsePgDumpVersion('bash: pg_dump: command not found'), undefined);
  });
});

/**
 * Issue 11 item 5: quiesce.mode snapshot on the simulated VCSA 6.x. The services are down for
 * stop + snapshot export + start only; the dump, taken while vpxd writes again, holds exactly the
 * rows of the stop. An appliance whose pg_dump predates --snapshot falls back to classic, with
 * the reason in the log and the manifest. Several databases get one held snapshot each.
 */
void describe('snapshot mode', () => {
  let dir: string;
  let s3: EmbeddedS3;
  let store: ObjectStore;
  let auditLog: string;
  const suffix = randomBytes(3).toString('hex');

  const setup = (target: Record<string, unknown>, extra: Record<string, unknown> = {}, profiles?: ReadonlyMap<string, Profile>): { config: Config; target: TargetConfig } => {
    const config = parseConfig(
      {
        s3: { bucket: s3.bucket, prefix: 'vcsa', endpoint: s3.endpoint, forcePathStyle: true, checksums: 'when-required', partSizeMiB: 5, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
        spool: { dir: join(dir, 'spool'), minFreeMiB: 0 },
        retention: { afterBackup: false },
        targets: [{ executor: { type: 'local' }, ...target }],
        ...extra,
      },
      { env: {}, ...(profiles ? { profiles } : {}) },
    );
    const t = config.targets[0];
    assert.ok(t);
    return { config, target: t };
  };
  const applianceAudit = (name: string) => async (): Promise<AuditEntry[]> => (await readAudit(auditLog)).filter((e) => e.appliance === name);
  const artifactBytes = async (m: Manifest, name: string): Promise<Buffer> => {
    const a = m.artifacts.find((x) => x.name === name);
    assert.ok(a, `artifact ${name}`);
    return gunzipSync(await store.getBytes(a.key));
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapshot-test-'));
    auditLog = join(dir, 'audit.jsonl');
    s3 = await startEmbeddedS3({ bucket: `snapshot-${suffix}` });
    store = createS3ObjectStore(s3ConfigFor(s3), silentLogger);
  });
  after(async () => {
    store?.close();
    await s3?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  void describe('VCSA 6.x with vPostgres 9.6', () => {
    let sim: SimVcsa6Appliance;
    before(async () => {
      sim = await createSimVcsa6Appliance({ name: `snap6-${suffix}`, baseDir: join(dir, 'appliances'), auditLog, tickMs: 20 });
    });
    after(async () => {
      await sim?.destroy();
    });

    void test('the dump is the VCDB at the stop, taken after the services are back; the window holds no dump', async () => {
      const { config, target } = setup({ name: 'vc6', profile: 'vcsa-6.x', variables: { ...sim.variables } });
      await waitFor('vpxd to write events', async () => (await sim.readEvent()) > 3);
      let atStop: number | undefined;
      let afterStart: number | undefined;
      const { executor, sent } = recordingExecutor(createExecutor(target.executor, silentLogger), applianceAudit(sim.name), {
        // vpxd is gone when its stop returns: this read is the VCDB as the stop left it.
        afterStop: async () => {
          atStop = await sim.readEvent();
        },
        // vpxd runs again: let it write past the stop before the dump starts reading.
        beforeSnapshotDump: async () => {
          await waitFor('vpxd to write after the start', async () => (afterStart = await sim.readEvent()) > (atStop ?? Infinity));
        },
      });
      const { logger, lines } = capturingLogger();
      const outcome = await runBackup({ config, target, executor, store, logger }).finally(() => executor.close());
      const m = outcome.manifest;

      assert.equal(m.quiesce?.mode, 'snapshot');
      assert.equal(m.quiesce?.reason, undefined);
      assert.ok(atStop !== undefined && afterStart !== undefined && afterStart > atStop, `vpxd wrote past the stop (${atStop} → ${afterStart})`);
      const dumped = vcdbSequenceFromSql(await artifactBytes(m, 'vcdb'));
      assert.equal(dumped, atStop, 'the dump holds every row up to the stop and none written after it');

      // Order, from the audit log: stop → snapshot session opened while stopped → start → dump.
      const stopIdx = sent.findIndex((s) => s.command.includes('--stop vmware-vpxd'));
      const sessionIdx = sent.findIndex((s) => s.heldOpen);
      const startIdx = sent.findIndex((s) => s.command.includes('--start vmware-vpxd'));
      const dumpIdx = sent.findIndex((s) => s.command.includes('--snapshot='));
      assert.ok(stopIdx >= 0 && stopIdx < sessionIdx && sessionIdx < startIdx && startIdx < dumpIdx, sent.map((s) => s.command.slice(0, 60)).join('\n'));
      const session = sent[sessionIdx]!;
      assert.equal(lastState(session.auditBefore, 'vmware-vpxd'), 'stopped', 'the snapshot is exported while vpxd is stopped');
      const dump = sent[dumpIdx]!;
      const windowEntries = dump.auditBefore.slice(sent[stopIdx]!.auditBefore.length);
      assert.deepEqual(
        windowEntries.map((e) => `${e.service} ${e.state}`),
        ['vmware-vpxd stopped', 'vmware-vpxd running'],
        'the window (stop … running) closed before the dump began',
      );
      assert.deepEqual(dump.auditAfter, dump.auditBefore, 'nothing stopped while the dump ran');
      assert.ok(
        !sent.slice(stopIdx, startIdx).some((s) => /pg_dump/.test(s.command) && !/--version/.test(s.command)),
        'no dump ran inside the window',
      );
      assert.ok(lines().some((l) => l['msg'] === 'snapshot exported; its transaction stays open until the dump'));
      assert.equal(await sim.servicesRunning(), true);
    });

    void test('quiesce.mode classic dumps inside the window', async () => {
      const { config, target } = setup({ name: 'vc6c', profile: 'vcsa-6.x', variables: { ...sim.variables } }, { quiesce: { mode: 'classic' } });
      const { executor, sent } = recordingExecutor(createExecutor(target.executor, silentLogger), applianceAudit(sim.name));
      const outcome = await runBackup({ config, target, executor, store, logger: silentLogger }).finally(() => executor.close());
      assert.equal(outcome.manifest.quiesce?.mode, 'classic');
      assert.equal(outcome.manifest.quiesce?.reason, undefined, 'asked for: no reason to give');
      assert.ok(!sent.some((s) => s.heldOpen || /--snapshot=|--version/.test(s.command)));
      const dump = sent.find((s) => /pg_dump -h/.test(s.command));
      assert.ok(dump);
      assert.equal(lastState(dump.auditBefore, 'vmware-vpxd'), 'stopped');
      assert.equal(lastState(dump.auditAfter, 'vmware-vpxd'), 'stopped');
    });
  });

  void test('a VCSA 6.5 (vPostgres 9.4) falls back to classic, says why, and the dump runs with vpxd stopped', async () => {
    const sim = await createSimVcsa6Appliance({ name: `snap65-${suffix}`, baseDir: join(dir, 'appliances'), auditLog, vpostgresVersion: '9.4.26' });
    try {
      const { config, target } = setup({ name: 'vc65', profile: 'vcsa-6.x', variables: { ...sim.variables } });
      const { executor, sent } = recordingExecutor(createExecutor(target.executor, silentLogger), applianceAudit(sim.name));
      const { logger, lines } = capturingLogger();
      const outcome = await runBackup({ config, target, executor, store, logger }).finally(() => executor.close());
      const q = outcome.manifest.quiesce;
      assert.equal(q?.mode, 'classic');
      assert.match(q?.reason ?? '', /pg_dump is 9\.4\.26; --snapshot needs 9\.5 or later/);
      const warning = lines().find((l) => /not possible on this appliance/.test(String(l['msg'])));
      assert.ok(warning, 'the fallback is logged');
      assert.equal(warning['reason'], q?.reason);
      assert.ok(!sent.some((s) => s.heldOpen || /--snapshot=/.test(s.command)), 'no snapshot was tried');
      const versionIdx = sent.findIndex((s) => /pg_dump --version/.test(s.command));
      const stopIdx = sent.findIndex((s) => s.command.includes('--stop vmware-vpxd'));
      assert.ok(versionIdx >= 0 && versionIdx < stopIdx, 'the version is asked before anything stops');
      const dump = sent.find((s) => /pg_dump -h/.test(s.command));
      assert.ok(dump);
      assert.equal(lastState(dump.auditBefore, 'vmware-vpxd'), 'stopped', 'classic: the dump runs inside the window');
      assert.ok(vcdbSequenceFromSql(await artifactBytes(outcome.manifest, 'vcdb')) > 0);
    } finally {
      await sim.destroy();
    }
  });

  void test('vcsa-5.5 is never snapshot; a profile with two databases exports one held snapshot each while both are stopped', async () => {
    const sim: SimAppliance = await createSimAppliance({ name: `snap55-${suffix}`, baseDir: join(dir, 'appliances'), auditLog, tickMs: 20 });
    try {
      await waitFor('vpxd to write events', async () => (await sim.readSequences()).vcdb > 3);
      // The built-in 5.5 profile: classic, and no pg_dump --version asked.
      const classic = setup({ name: 'vc55', profile: 'vcsa-5.5', variables: { ...sim.variables } });
      const plain = recordingExecutor(createExecutor(classic.target.executor, silentLogger), applianceAudit(sim.name));
      const c = await runBackup({ ...classic, executor: plain.executor, store, logger: silentLogger }).finally(() => plain.executor.close());
      assert.equal(c.manifest.quiesce?.mode, 'classic');
      assert.match(c.manifest.quiesce?.reason ?? '', /profile vcsa-5.5 has no snapshot mode/);
      assert.ok(!plain.sent.some((s) => /--version|--snapshot/.test(s.command)));

      // The same appliance under a profile whose both databases can be dumped from snapshots.
      const base = builtinProfiles.get('vcsa-5.5')!;
      const env = '. {{DB_CFG}}; export PGPASSWORD="$EMB_DB_PASSWORD";';
      const twoDbs: Profile = {
        ...base,
        name: 'two-snapshots',
        variables: { ...base.variables, INV_DB: '' },
        dumps: base.dumps.map((d) => ({
          ...d,
          snapshot:
            d.name === 'vcdb'
              ? {
                  session: `set -e; ${env} exec {{VPG_BIN}}/psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$EMB_DB_USER" -d "$EMB_DB_INSTANCE"`,
                  dump: `set -e; ${env} exec {{VPG_BIN}}/pg_dump --snapshot={{SNAPSHOT}} -U "$EMB_DB_USER" -Fp -c "$EMB_DB_INSTANCE"`,
                }
              : {
                  session: `set -e; ${env} exec {{VPG_BIN}}/psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$EMB_DB_USER" -d {{INV_DB}}`,
                  dump: `set -e; ${env} exec {{VPG_BIN}}/pg_dump --snapshot={{SNAPSHOT}} -U "$EMB_DB_USER" -Fc {{INV_DB}}`,
                },
        })),
        snapshot: { pgDumpVersion: '{{VPG_BIN}}/pg_dump --version' },
      };
      const { config, target } = setup(
        { name: 'vc55s', profile: 'two-snapshots', variables: { ...sim.variables, INV_DB: sim.inventoryDbName } },
        {},
        new Map([...builtinProfiles, [twoDbs.name, twoDbs]]),
      );
      let atStop: { vcdb: number; inventory: number } | undefined;
      const { executor, sent } = recordingExecutor(createExecutor(target.executor, silentLogger), applianceAudit(sim.name), {
        afterStop: async () => {
          atStop = await sim.readSequences();
        },
        beforeSnapshotDump: async () => {
          // Both services run again: vpxd writes, the inventory service mirrors it.
          await waitFor('the inventory service to mirror events written after the start', async () => (await sim.readSequences()).inventory > (atStop?.vcdb ?? Infinity));
        },
      });
      const outcome = await runBackup({ config, target, executor, store, logger: silentLogger }).finally(() => executor.close());
      const m = outcome.manifest;
      assert.equal(m.quiesce?.mode, 'snapshot');
      const sessions = sent.filter((s) => s.heldOpen);
      assert.equal(sessions.length, 2, 'one held transaction per database');
      for (const s of sessions) {
        assert.equal(lastState(s.auditBefore, 'vmware-vpxd'), 'stopped');
        assert.equal(lastState(s.auditBefore, 'vmware-inventoryservice'), 'stopped');
      }
      const pair = await dumpPairSequences(await artifactBytes(m, 'vcdb'), await artifactBytes(m, 'inventory'));
      assert.deepEqual(pair, { vcdb: atStop?.vcdb, inventory: atStop?.vcdb }, 'both dumps are the databases as the stop left them, and agree');
    } finally {
      await sim.destroy();
    }
  });
});
