import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Config } from '../../src/config/load.ts';
import { createExecutor } from '../../src/executors/index.ts';
import { fleetLeaseFor } from '../../src/locks/fleet-lease.ts';
import { Watchdog } from '../../src/locks/watchdog.ts';
import { silentLogger } from '../../src/log.ts';
import { restoreBackup } from '../../src/restore/restore.ts';
import { readAudit } from '../../src/sim/audit.ts';
import type { SimAppliance } from '../../src/sim/appliance.ts';
import { rejectsWithCode, waitFor } from '../support/poll.ts';
import { createFixture, type Fixture } from '../restore/fixture.ts';

/**
 * withQuiescedAppliance's abandon path, driven through restore: the restore stops the services,
 * restores, and the services refuse to start. The slot must stay taken (another appliance must
 * not stop while this one is down), the restore must stop renewing it, and the watchdog must start
 * the services, confirm them, and only then free the slot.
 */
void describe('restore whose services are not confirmed running: the watchdog takes over', () => {
  let fx: Fixture;
  let vc1: SimAppliance;
  let flag: string;
  let config: Config;

  before(async () => {
    fx = await createFixture(['vc1']);
    vc1 = fx.appliances.get('vc1')!;
    // The appliance's `service`, except that `start` fails while the flag file exists.
    flag = join(fx.dir, 'start-is-broken');
    const wrapper = join(fx.dir, 'service-with-broken-start');
    await writeFile(
      wrapper,
      `#!/bin/bash\nif [ "\${2:-}" = start ] && [ -e '${flag}' ]; then echo "start refused: the flag file ${flag} exists" >&2; exit 1; fi\nexec '${vc1.serviceCommand}' "$@"\n`,
      { mode: 0o755 },
    );
    config = fx.config({
      quiesce: { leaseSeconds: 30, watchdogIntervalSeconds: 1, waitSeconds: 30 },
      targets: [{ name: 'vc1', profile: 'vcsa-5.5', executor: { type: 'local' }, variables: { ...vc1.variables, SERVICE: wrapper } }],
    });
  });
  after(async () => {
    await fx?.close();
  });

  void test('the slot stays taken with its reason, then the watchdog starts the services and frees it', async () => {
    const backup = await fx.backup('vc1');
    const target = config.targets[0]!;
    await writeFile(flag, '');
    const err = await rejectsWithCode(
      restoreBackup({ config, source: 'vc1', target, backup: backup.manifest.id, store: fx.store, executor: fx.executor(target), redis: fx.redis, logger: silentLogger }),
      'RESTORE_FAILED',
    );
    assert.match(err.message, /restored: vcdb, inventory; .*services NOT running: vmware-vpxd, vmware-inventoryservice/);
    assert.deepEqual(err.details['servicesDown'], ['vmware-vpxd', 'vmware-inventoryservice']);
    assert.equal(await vc1.servicesRunning(), false);

    // The slot is still taken, marked with why; nobody else may stop an appliance.
    const lease = fleetLeaseFor(config, fx.redis, { logger: silentLogger, holderId: 'test-other' });
    const [entry] = await lease.holders();
    assert.equal(entry?.target, 'vc1');
    assert.match(entry?.abandoned?.reason ?? '', /not running after the failure: vmware-vpxd, vmware-inventoryservice/);
    assert.equal(await lease.tryAcquire('vc2'), null, 'the abandoned slot still counts against quiesce.maxConcurrent');
    // The restore stopped renewing it: by Redis's clock it has expired (abandon ends it at once).
    assert.ok((entry?.expiresAt ?? Infinity) <= (await lease.redisNow()));

    // The watchdog cannot start the services while start is broken: the slot stays taken.
    const watchdog = new Watchdog({ config, lease, makeExecutor: (t) => createExecutor(t.executor, silentLogger), logger: silentLogger, rescuerId: 'test-watchdog' });
    assert.deepEqual(await watchdog.sweep(), []);
    assert.equal((await lease.holders()).length, 1);

    // Once the appliance can start its services again, the watchdog starts and confirms them, then frees the slot.
    await rm(flag);
    const t0 = Date.now();
    await waitFor('the watchdog to rescue vc1', async () => (await watchdog.sweep()).includes('vc1'));
    assert.equal(await vc1.servicesRunning(), true);
    assert.deepEqual(await lease.holders(), [], 'slot freed');
    const starts = (await readAudit(fx.auditLog)).filter((e) => e.ts >= t0 && e.state === 'running').map((e) => e.service);
    assert.deepEqual(starts.sort(), ['vmware-inventoryservice', 'vmware-vpxd']);
    const mine = await lease.tryAcquire('vc2');
    assert.ok(mine, 'another appliance may now take the slot');
    await mine.release();
  });
});
