import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { BackupError } from '../../src/errors.ts';
import { planRetention, type RetentionCandidate, type RetentionPolicy } from '../../src/retention/policy.ts';

const now = new Date('2026-11-26T12:00:00.000Z');
const day = 24 * 3600 * 1000;

/** A backup `daysAgo` days before now (negative: in the future). */
function b(daysAgo: number, bytes = 1000, id?: string): RetentionCandidate {
  const at = new Date(now.getTime() - daysAgo * day);
  return { id: id ?? at.toISOString().replace(/[-:]/g, ''), at, bytes };
}

function ids(list: readonly RetentionCandidate[]): string[] {
  return list.map((x) => x.id);
}

function plan(backups: RetentionCandidate[], policy: RetentionPolicy) {
  return planRetention(backups, { minSizeRatio: 0.5, ...policy }, now, 'vc01');
}

void describe('retention policy', () => {
  void test('keep 0 is rejected by the config and by the policy itself', () => {
    assert.throws(
      () => parseConfig({ s3: { bucket: 'bkt' }, retention: { keepLast: 0 }, targets: [{ name: 'vc01', profile: 'postgres', executor: { type: 'local' } }] }, { env: {} }),
      /retention\.keepLast/,
    );
    assert.throws(() => plan([b(1), b(2)], { keepLast: 0 }), (e: unknown) => e instanceof BackupError && e.code === 'RETENTION_INVALID' && /keepLast/.test(e.message));
  });

  void test('no rule keeps everything', () => {
    const p = plan([b(1), b(100), b(1000)], {});
    assert.equal(p.delete.length, 0);
    assert.equal(p.keep.length, 3);
  });

  void test('keep 1 keeps only the newest', () => {
    const backups = [b(3), b(1), b(2)];
    const p = plan(backups, { keepLast: 1 });
    assert.deepEqual(ids(p.keep), [ids(backups)[1]]);
    assert.deepEqual(ids(p.delete), [ids(backups)[2], ids(backups)[0]]);
    assert.match(p.reasons[backups[0]!.id]!, /^deleted/);
  });

  void test('keepLast larger than the history deletes nothing', () => {
    assert.equal(plan([b(1), b(2)], { keepLast: 5 }).delete.length, 0);
  });

  void test('by age: older than maxAgeDays goes, the rest stays', () => {
    const p = plan([b(1), b(10), b(29.9), b(30.1), b(90)], { maxAgeDays: 30 });
    assert.equal(p.keep.length, 3);
    assert.equal(p.delete.length, 2);
  });

  void test('rules add up: keepLast keeps old ones that age alone would delete', () => {
    const p = plan([b(40), b(50), b(60), b(70)], { maxAgeDays: 45, keepLast: 3 });
    assert.equal(p.keep.length, 3);
    assert.deepEqual(ids(p.delete), [ids([b(70)])[0]]);
  });

  void test('everything expired: refused, nothing deleted, the error says to check the configuration', () => {
    assert.throws(
      () => plan([b(40), b(50)], { maxAgeDays: 30 }),
      (e: unknown) => e instanceof BackupError && e.code === 'RETENTION_WOULD_DELETE_ALL' && /check your configuration/i.test(e.message),
    );
  });

  void test('timestamps from the future are never deleted and are reported; the newest real backup is kept', () => {
    const future = b(-3, 1000, 'future');
    const p = plan([future, b(1), b(2), b(3)], { keepLast: 1 });
    assert.ok(ids(p.keep).includes('future'));
    assert.deepEqual(ids(p.future), ['future']);
    assert.match(p.reasons['future']!, /future/);
    // keepLast counts real backups only: the newest real one stays too.
    assert.ok(ids(p.keep).includes(b(1).id));
    assert.equal(p.delete.length, 2);
  });

  void test('only future backups: nothing is deleted', () => {
    const p = plan([b(-1, 1000, 'f1'), b(-2, 1000, 'f2')], { keepLast: 1 });
    assert.equal(p.delete.length, 0);
    assert.equal(p.future.length, 2);
  });

  void test('an empty history plans nothing', () => {
    const p = plan([], { keepLast: 1, maxAgeDays: 1 });
    assert.deepEqual(p.keep, []);
    assert.deepEqual(p.delete, []);
  });

  void test('daily tier: the newest backup of each of the last N days that have one', () => {
    // Two backups a day for five days: 10:00 and 02:00 UTC.
    const backups: RetentionCandidate[] = [];
    for (let d = 0; d < 5; d++) {
      for (const hour of [10, 2]) {
        const at = new Date(Date.UTC(2026, 10, 26 - d, hour));
        backups.push({ id: `d${d}h${hour}`, at, bytes: 1000 });
      }
    }
    const p = plan(backups, { keepDaily: 3 });
    assert.deepEqual(ids(p.keep), ['d0h10', 'd1h10', 'd2h10']);
    assert.equal(p.delete.length, 7);
    assert.match(p.reasons['d1h10']!, /newest of day 2026-11-25/);
  });

  void test('daily tier counts days that have backups: a gap does not sweep old ones away', () => {
    const p = plan([b(0.1, 1000, 'today'), b(20, 1000, 'old1'), b(21, 1000, 'old2'), b(22, 1000, 'old3')], { keepDaily: 3 });
    assert.deepEqual(ids(p.keep), ['today', 'old1', 'old2']);
  });

  void test('weekly and monthly tiers', () => {
    const backups: RetentionCandidate[] = [];
    // One backup a day from 2026-08-01 to 2026-11-26.
    for (let t = Date.UTC(2026, 7, 1, 3); t <= Date.UTC(2026, 10, 26, 3); t += day) {
      backups.push({ id: new Date(t).toISOString().slice(0, 10), at: new Date(t), bytes: 1000 });
    }
    const weekly = plan(backups, { keepWeekly: 2 });
    // 2026-11-26 is a Thursday; the week before ends on Sunday 2026-11-22.
    assert.deepEqual(ids(weekly.keep), ['2026-11-26', '2026-11-22']);
    const monthly = plan(backups, { keepMonthly: 3 });
    assert.deepEqual(ids(monthly.keep), ['2026-11-26', '2026-10-31', '2026-09-30']);
    const combined = plan(backups, { keepLast: 2, keepWeekly: 2, keepMonthly: 2 });
    assert.deepEqual(ids(combined.keep), ['2026-11-26', '2026-11-25', '2026-11-22', '2026-10-31']);
  });

  void test('size-drop guard: a suspiciously small newest backup stops all pruning, and says why', () => {
    const p = plan([b(1, 100), b(2, 1000), b(40, 1000), b(50, 1000)], { maxAgeDays: 30 });
    assert.equal(p.delete.length, 0);
    assert.match(p.skipped ?? '', /smaller than 0\.5 × the one before.*minSizeRatio/);
    // Just above the threshold: pruning goes ahead.
    const ok = plan([b(1, 600), b(2, 1000), b(40, 1000), b(50, 1000)], { maxAgeDays: 30 });
    assert.equal(ok.skipped, null);
    assert.equal(ok.delete.length, 2);
    // Ratio 0 turns the guard off.
    assert.equal(plan([b(1, 1), b(2, 1000), b(40, 1000)], { maxAgeDays: 30, minSizeRatio: 0 }).delete.length, 1);
  });

  void test('the newest backup is never deleted, whatever the rules', () => {
    for (const policy of [{ keepLast: 1 }, { maxAgeDays: 1 }, { keepDaily: 1 }, { keepWeekly: 1 }, { keepMonthly: 1 }] as RetentionPolicy[]) {
      const backups = [b(0.5), b(3), b(10), b(100)];
      const p = plan(backups, policy);
      assert.ok(ids(p.keep).includes(backups[0]!.id), JSON.stringify(policy));
      assert.equal(p.keep.length + p.delete.length, backups.length);
    }
  });
});
