import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TargetConfig } from '../../src/config/load.ts';
import { Secret } from '../../src/config/secret.ts';
import { BackupError } from '../../src/errors.ts';
import { createExecutor } from '../../src/executors/index.ts';
import type { Executor } from '../../src/executors/executor.ts';
import { processBackupJob, type BackupJobData, type BackupJobDeps, type BackupJobResult } from '../../src/fleet/backup-job.ts';
import { fleetLeaseFor } from '../../src/locks/fleet-lease.ts';
import { Watchdog } from '../../src/locks/watchdog.ts';
import { silentLogger } from '../../src/log.ts';
import { FleetState } from '../../src/state/fleet-state.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { freePort, startFleetHarness, type FleetHarness } from '../support/fleet.ts';
import { rejectsWithCode } from '../support/poll.ts';

/**
 * Issue 9 item 3: one unreachable appliance must not block the fleet.
 * - Unreachable before anything stopped (an SSH address nobody listens on): the precheck fails
 *   before the lease is taken, the slot is free, and a healthy appliance is backed up.
 * - Stopped, then unreachable: the slot stays taken (invariant 1) but says why; the watchdog's
 *   failed rescue notifies once and backs off; `lease release --force` frees it, and the healthy
 *   appliance is backed up.
 * Jobs run in this process (the worker's code path minus BullMQ).
 */
void describe('an unreachable appliance does not block the fleet', () => {
  let h: FleetHarness;
  let closedPort: number;
  const executors: Executor[] = [];

  before(async () => {
    closedPort = await freePort();
    h = await startFleetHarness({ count: 2, workers: 0, tune: { worker: { uploadAttempts: 1 } } });
  });
  after(async () => {
    await Promise.allSettled(executors.map((e) => e.close()));
    await h?.close();
  });

  async function runJob(target: string, makeExecutor: (t: TargetConfig) => Executor): Promise<BackupJobResult> {
    const config = h.config();
    const store = createS3ObjectStore(config.s3, silentLogger);
    const deps: BackupJobDeps = {
      config,
      redis: h.redis,
      lease: fleetLeaseFor(config, h.redis, { logger: silentLogger, holderId: `test:${process.pid}:${target}` }),
      state: new FleetState(h.redis, config.redis.prefix),
      store,
      makeExecutor,
      logger: silentLogger,
    };
    const data: BackupJobData = { target, runId: `r${Date.now()}`, trigger: 'run' };
    try {
      return await processBackupJob(
        deps,
        { id: `test-${target}-${Date.now()}`, data, attempt: 1, maxAttempts: 1, updateData: () => Promise.resolve(), reportProgress: () => undefined },
        new AbortController().signal,
      );
    } finally {
      store.close();
    }
  }
  const real = (t: TargetConfig): Executor => {
    const e = createExecutor(t.executor, silentLogger);
    executors.push(e);
    return e;
  };
  /** An SSH executor pointed at a loopback port nobody listens on: refused at once. */
  const unreachable = (t: TargetConfig): Executor =>
    real({ ...t, executor: { type: 'ssh', host: '127.0.0.1', port: closedPort, user: 'root', hostKey: `SHA256:${'A'.repeat(43)}`, keepaliveSeconds: 15, connectTimeoutSeconds: 5, password: new Secret('unused', 'test') } });

  void test('unreachable before anything stopped: no slot taken, the healthy appliance is backed up', async () => {
    const t0 = Date.now();
    await assert.rejects(runJob('vc01', unreachable));
    assert.deepEqual(await h.leaseHolders(), [], 'nothing was stopped, so no slot is left to the watchdog');
    assert.deepEqual((await h.audit()).filter((e) => e.ts >= t0 && e.appliance.startsWith('vc01')), [], 'vc01 untouched');
    const ok = await runJob('vc02', real);
    assert.equal(ok.target, 'vc02');
    assert.deepEqual(await h.leaseHolders(), []);
  });

  void test('stopped, then unreachable: the slot stays taken and says why, the watchdog backs off and notifies once, lease release --force frees it', async () => {
    // vc01's network goes away right after its services were stopped.
    let cut = false;
    const cutAfterStop = (t: TargetConfig): Executor => {
      const inner = real(t);
      return {
        kind: inner.kind,
        description: inner.description,
        close: () => inner.close(),
        async run(command, options) {
          if (cut) throw new BackupError('SSH_UNREACHABLE', `simulated: ${inner.description} stopped answering`);
          const result = await inner.run(command, options);
          if (command.includes('vmware-inventoryservice stop')) cut = true;
          return result;
        },
      };
    };
    await assert.rejects(runJob('vc01', cutAfterStop));
    const [held] = await h.leaseHolders();
    assert.equal(held?.target, 'vc01');
    assert.match(held?.abandoned?.reason ?? '', /could not be confirmed running: the appliance did not answer/);

    const status = await h.cli(['status', '--json']);
    assert.equal(status.code, 0, status.stderr);
    const lease = (JSON.parse(status.stdout) as { lease: { target: string; why?: string }[] }).lease;
    assert.equal(lease[0]?.target, 'vc01');
    assert.match(lease[0]?.why ?? '', /left to the watchdog: services of vc01 were stopped/);

    // The watchdog cannot reach vc01 either: the slot stays, one notification, then backoff.
    const config = h.config();
    const notified: { target: string; message: string }[] = [];
    const watchdog = new Watchdog({
      config,
      lease: fleetLeaseFor(config, h.redis, { logger: silentLogger }),
      makeExecutor: cutAfterStop,
      logger: silentLogger,
      rescuerId: 'test-watchdog',
      notifier: { fleetHeld: (target, held) => Promise.resolve(void notified.push({ target, message: held.message })) },
    });
    assert.deepEqual(await watchdog.sweep(), []);
    assert.deepEqual(await watchdog.sweep(), [], 'backing off: the second sweep does not try again at once');
    const [after1] = await h.leaseHolders();
    assert.equal(after1?.rescueFailures, 1, 'one attempt, then backoff');
    assert.ok((after1?.nextRescueAt ?? 0) > (after1?.expiresAt ?? Infinity));
    assert.equal(notified.length, 1);
    assert.match(notified[0]?.message ?? '', /the watchdog could not start its services: services did not start on .*stopped answering/);

    // Another appliance may not stop meanwhile: its job waits for the slot (and here gives up at once).
    await h.editConfig((raw) => void ((raw['quiesce'] as Record<string, unknown>)['waitSeconds'] = 0.2));
    await rejectsWithCode(runJob('vc02', real), 'LEASE_TIMEOUT');

    // The operator checked vc01 (here: starts its services by hand) and frees the slot.
    const sim = h.fleet.appliances.find((a) => a.name === 'vc01');
    assert.ok(sim);
    for (const s of ['vmware-inventoryservice', 'vmware-vpxd'] as const) await sim.service(s, 'start');
    const refused = await h.cli(['lease', 'release', '--target', 'vc01']);
    assert.equal(refused.code, 2, 'without --force: refused');
    const released = await h.cli(['lease', 'release', '--target', 'vc01', '--force', '--yes', '--json']);
    assert.equal(released.code, 0, released.stderr);
    assert.equal((JSON.parse(released.stdout) as { released: boolean }).released, true);
    assert.match(released.stderr, /fleet slot released by an operator/);
    assert.deepEqual(await h.leaseHolders(), []);
    await h.editConfig((raw) => void ((raw['quiesce'] as Record<string, unknown>)['waitSeconds'] = 120));
    const ok = await runJob('vc02', real);
    assert.equal(ok.target, 'vc02');
  });
});
