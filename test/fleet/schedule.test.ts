import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Queue } from 'bullmq';
import type { BackupJobData, BackupJobResult } from '../../src/fleet/backup-job.ts';
import { backupQueueName, triggerQueueName } from '../../workers/queues.ts';
import { startFleetHarness, waitFor, type FleetHarness } from '../support/fleet.ts';

interface ScheduleDoc {
  schedules: { target: string; cron: string; tz: string; next: string | null }[];
  removed: string[];
}

const tz = 'Asia/Kolkata';

/** A six-field cron pattern (seconds first) that fires once a day at `at`'s wall-clock time in `zone`. */
function dailyPatternAt(at: Date, zone: string): string {
  const parts = new Intl.DateTimeFormat('en-GB', { timeZone: zone, hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' }).formatToParts(at);
  const get = (type: string): number => Number(parts.find((p) => p.type === type)?.value);
  return `${get('second')} ${get('minute')} ${get('hour')} * * *`;
}

/**
 * Issue 3: `schedule` upserts a job scheduler per target from cron + time zone, whose next tick is
 * due at the configured instant in that zone (Kolkata is UTC+5:30: a pattern read as UTC would be
 * due hours off); a running worker turns the tick into a backup job that completes. Removing a target
 * from the YAML and running `schedule` again removes its scheduler.
 */
void describe('scheduler', () => {
  let h: FleetHarness;
  let queue: Queue<BackupJobData, BackupJobResult>;
  let triggers: Queue;

  before(async () => {
    h = await startFleetHarness({ count: 2, workers: 1 });
    queue = new Queue(backupQueueName, { connection: h.redis, prefix: h.prefix });
    triggers = new Queue(triggerQueueName, { connection: h.redis, prefix: h.prefix });
  });
  after(async () => {
    await queue?.close();
    await triggers?.close();
    await h?.close();
  });

  void test('the next tick is at the configured second in the configured time zone, and a tick becomes a completed backup', async () => {
    // Hours ahead: nothing here waits for the wall clock. BullMQ keeps the next tick as a
    // delayed trigger job due at that instant; promoting it is the tick arriving.
    const fireAt = Math.ceil((Date.now() + 3 * 3600_000) / 1000) * 1000;
    const pattern = dailyPatternAt(new Date(fireAt), tz);
    await h.editConfig((raw) => {
      raw['schedule'] = { cron: pattern, tz };
      const targets = raw['targets'] as Record<string, unknown>[];
      // vc02 has its own schedule (03:00 UTC): per-target overrides win.
      if (targets[1]) targets[1]['schedule'] = { cron: '0 3 * * *', tz: 'UTC' };
    });

    const res = await h.cli(['schedule', '--json']);
    assert.equal(res.code, 0, res.stderr);
    const doc = JSON.parse(res.stdout) as ScheduleDoc;
    const vc01 = doc.schedules.find((s) => s.target === 'vc01');
    const vc02 = doc.schedules.find((s) => s.target === 'vc02');
    assert.deepEqual({ cron: vc01?.cron, tz: vc01?.tz, next: vc01?.next }, { cron: pattern, tz, next: new Date(fireAt).toISOString() });
    assert.equal(vc02?.cron, '0 3 * * *');
    assert.match(vc02?.next ?? '', /T03:00:00\.000Z$/);

    const tick = (await triggers.getJobs(['delayed'])).find((j) => j.repeatJobKey === 'nightly.vc01');
    assert.ok(tick, 'a delayed trigger for vc01');
    assert.equal(tick.timestamp + tick.delay, fireAt, `the trigger is due at ${new Date(fireAt).toISOString()} (${pattern} in ${tz}), not ${new Date(tick.timestamp + tick.delay).toISOString()}`);
    await tick.promote();

    const job = await waitFor(
      'the scheduled backup of vc01 to complete',
      async () => (await queue.getJobs(['completed'])).find((j) => j.data.target === 'vc01' && j.data.trigger === 'schedule'),
      60_000,
      200,
    );
    assert.equal(job.returnvalue.target, 'vc01');
    assert.match(job.returnvalue.manifestKey, /^vcsa\/vc01\/.+\/manifest\.json$/);
    // Only vc01's scheduler fired.
    assert.equal((await queue.getJobs(['completed', 'active', 'waiting', 'delayed'])).filter((j) => j.data.target === 'vc02').length, 0);
  });

  void test('schedule after removing a target from the YAML removes its scheduler', async () => {
    await h.editConfig((raw) => {
      raw['targets'] = (raw['targets'] as { name: string }[]).filter((x) => x.name !== 'vc02');
    });
    const res = await h.cli(['schedule', '--json']);
    assert.equal(res.code, 0, res.stderr);
    const doc = JSON.parse(res.stdout) as ScheduleDoc;
    assert.deepEqual(doc.removed, ['vc02']);
    assert.deepEqual(doc.schedules.map((s) => s.target), ['vc01']);
    const ids = (await triggers.getJobSchedulers(0, -1)).map((s) => s.key);
    assert.deepEqual(ids, ['nightly.vc01']);
  });
});
