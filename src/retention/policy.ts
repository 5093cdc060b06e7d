import { newestFirst } from '../catalog/catalog.ts';
import { formatBytes } from '../format.ts';
import { BackupError } from '../errors.ts';

/**
 * Which backups to keep, as a pure function of the backups, the policy and the clock.
 *
 * Semantics (documented for operators in docs/restore.md):
 * - Rules add up: a backup is kept when ANY rule keeps it (keepLast N; younger than maxAgeDays;
 *   the newest backup of each of the last keepDaily days / keepWeekly ISO weeks / keepMonthly
 *   months that have a backup, UTC). A policy with no rule keeps everything.
 * - Tiers count periods that HAVE a backup, not calendar periods back from now: when backups
 *   stop for a while, old ones are not swept away by the calendar (the complaint of users of
 *   day-based pruning when runs are skipped).
 * - The newest backup whose time is not in the future is always kept.
 * - Backups timestamped in the future (a skewed clock) are never deleted, and are reported.
 * - If the rules alone would keep none of the backups, nothing is deleted: the policy is refused.
 * - If the newest backup is smaller than minSizeRatio × the one before, nothing is deleted: it
 *   may be broken, and the older ones may be the only good copies.
 */
export interface RetentionPolicy {
  readonly keepLast?: number | undefined;
  readonly maxAgeDays?: number | undefined;
  readonly keepDaily?: number | undefined;
  readonly keepWeekly?: number | undefined;
  readonly keepMonthly?: number | undefined;
  /** 0 turns the size guard off. */
  readonly minSizeRatio?: number | undefined;
}

export interface RetentionCandidate {
  readonly id: string;
  readonly at: Date;
  readonly bytes: number;
}

export interface RetentionPlan<T extends RetentionCandidate = RetentionCandidate> {
  /** Newest first. */
  readonly keep: T[];
  readonly delete: T[];
  /** Why each backup is kept or deleted, by id. */
  readonly reasons: Record<string, string>;
  /** Backups whose time is in the future (kept). */
  readonly future: T[];
  /** Set when pruning was skipped altogether (nothing deleted), and why. */
  readonly skipped: string | null;
}

const dayMs = 24 * 3600 * 1000;

export function hasRules(policy: RetentionPolicy): boolean {
  return policy.keepLast !== undefined || policy.maxAgeDays !== undefined || !!policy.keepDaily || !!policy.keepWeekly || !!policy.keepMonthly;
}

/** Rejects values a config schema should have caught, for callers that build a policy by hand. */
export function assertValidPolicy(policy: RetentionPolicy): void {
  const bad: string[] = [];
  if (policy.keepLast !== undefined && (!Number.isInteger(policy.keepLast) || policy.keepLast < 1)) {
    bad.push(`retention.keepLast: expected an integer from 1 and up, got \`${policy.keepLast}\` (keeping 0 backups would delete every backup; remove keepLast to keep all)`);
  }
  if (policy.maxAgeDays !== undefined && !(policy.maxAgeDays > 0)) bad.push(`retention.maxAgeDays: expected a number above 0, got \`${policy.maxAgeDays}\``);
  for (const tier of ['keepDaily', 'keepWeekly', 'keepMonthly'] as const) {
    const v = policy[tier];
    if (v !== undefined && (!Number.isInteger(v) || v < 0)) bad.push(`retention.${tier}: expected an integer from 0 and up, got \`${v}\``);
  }
  const ratio = policy.minSizeRatio;
  if (ratio !== undefined && !(ratio >= 0 && ratio <= 1)) bad.push(`retention.minSizeRatio: expected a number from 0 to 1, got \`${ratio}\``);
  if (bad.length > 0) throw new BackupError('RETENTION_INVALID', bad.join('\n'), { permanent: true });
}

function dayKey(d: Date): string {
  return d.toISOString().slice(0, 10);
}

function monthKey(d: Date): string {
  return d.toISOString().slice(0, 7);
}

/** ISO 8601 week, UTC: "2026-W05". */
function weekKey(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const weekday = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - weekday);
  const yearStart = Date.UTC(t.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((t.getTime() - yearStart) / dayMs + 1) / 7);
  return `${t.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

export function planRetention<T extends RetentionCandidate>(backups: readonly T[], policy: RetentionPolicy, now: Date, target = 'this target'): RetentionPlan<T> {
  assertValidPolicy(policy);
  const sorted = [...backups].sort(newestFirst);
  const reasons: Record<string, string> = {};
  const future = sorted.filter((b) => b.at.getTime() > now.getTime());
  for (const b of future) reasons[b.id] = `timestamp ${b.at.toISOString()} is in the future (clock skew?): never deleted`;
  const past = sorted.filter((b) => b.at.getTime() <= now.getTime());
  const keepAll = (why: string | null): RetentionPlan<T> => {
    for (const b of past) reasons[b.id] ??= 'kept: pruning skipped';
    return { keep: sorted, delete: [], reasons, future, skipped: why };
  };

  if (!hasRules(policy)) {
    for (const b of past) reasons[b.id] = 'kept: no retention rule configured';
    return { keep: sorted, delete: [], reasons, future, skipped: null };
  }
  const newest = past[0];
  if (!newest) return keepAll(null);

  // The size guard looks at the two newest backups: a run that produced a tiny dump (an empty
  // database, a truncated file) must not be the reason the good ones are pruned.
  const previous = past[1];
  const ratio = policy.minSizeRatio ?? 0;
  if (previous && ratio > 0 && newest.bytes < ratio * previous.bytes) {
    return keepAll(
      `newest backup ${newest.id} (${formatBytes(newest.bytes)}) is smaller than ${ratio} × the one before, ${previous.id} (${formatBytes(previous.bytes)}); ` +
        'not pruning until a backup of normal size exists. Check the newest backup (vcsa-backup verify), or lower retention.minSizeRatio if the shrink is expected.',
    );
  }

  const kept = new Map<string, string[]>();
  const mark = (b: T, why: string): void => {
    const list = kept.get(b.id) ?? [];
    list.push(why);
    kept.set(b.id, list);
  };
  if (policy.keepLast !== undefined) {
    past.slice(0, policy.keepLast).forEach((b, i) => mark(b, `among the last ${policy.keepLast} (#${i + 1})`));
  }
  if (policy.maxAgeDays !== undefined) {
    const cutoff = now.getTime() - policy.maxAgeDays * dayMs;
    for (const b of past) if (b.at.getTime() >= cutoff) mark(b, `younger than ${policy.maxAgeDays} days`);
  }
  const tier = (count: number | undefined, label: string, keyOf: (d: Date) => string): void => {
    if (!count) return;
    const seen = new Set<string>();
    for (const b of past) {
      const key = keyOf(b.at);
      if (seen.has(key)) continue;
      if (seen.size >= count) break;
      seen.add(key);
      mark(b, `newest of ${label} ${key}`);
    }
  };
  tier(policy.keepDaily, 'day', dayKey);
  tier(policy.keepWeekly, 'week', weekKey);
  tier(policy.keepMonthly, 'month', monthKey);

  if (kept.size === 0) {
    throw new BackupError(
      'RETENTION_WOULD_DELETE_ALL',
      `retention for ${target} would delete all ${past.length} backup(s) (the newest, ${newest.id}, is older than every rule allows); refusing to delete anything. ` +
        'Check your configuration (retention.maxAgeDays, keepLast) and why no recent backup exists.',
      { permanent: true, details: { target, backups: past.length } },
    );
  }
  // Belt and braces: whatever the rules say, the newest good backup stays.
  if (!kept.has(newest.id)) mark(newest, 'newest backup (always kept)');

  const keep: T[] = [];
  const del: T[] = [];
  for (const b of sorted) {
    if (future.includes(b)) {
      keep.push(b);
      continue;
    }
    const why = kept.get(b.id);
    if (why) {
      keep.push(b);
      reasons[b.id] = `kept: ${why.join('; ')}`;
    } else {
      del.push(b);
      reasons[b.id] = `deleted: matches no rule (taken ${b.at.toISOString()})`;
    }
  }
  return { keep, delete: del, reasons, future, skipped: null };
}

/** The part of the config schema's retention block that is a policy. */
export function policyFromConfig(retention: RetentionPolicy): RetentionPolicy {
  return {
    keepLast: retention.keepLast,
    maxAgeDays: retention.maxAgeDays,
    keepDaily: retention.keepDaily,
    keepWeekly: retention.keepWeekly,
    keepMonthly: retention.keepMonthly,
    minSizeRatio: retention.minSizeRatio,
  };
}
