import { targetPrefix } from '../backup/manifest.ts';
import { readManifests, scanTarget, type StoredBackup } from '../catalog/catalog.ts';
import type { Logger } from '../log.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { planRetention, type RetentionCandidate, type RetentionPolicy } from './policy.ts';

/** Debris younger than this may belong to an upload in progress: leave it alone. */
export const orphanMinAgeMs = 24 * 3600 * 1000;

export interface PruneInput {
  readonly store: ObjectStore;
  /** config.s3.prefix */
  readonly prefix: string;
  readonly target: string;
  readonly policy: RetentionPolicy;
  readonly logger: Logger;
  readonly dryRun?: boolean;
  /** Defaults to now. */
  readonly now?: Date;
  /** Defaults to one day. */
  readonly orphanMinAgeMs?: number;
}

export interface PrunedBackup {
  readonly id: string;
  readonly at: string;
  readonly bytes: number;
  readonly reason: string;
}

export interface PruneResult {
  readonly target: string;
  readonly dryRun: boolean;
  readonly kept: PrunedBackup[];
  /** Deleted, or (dry run) that would be. */
  readonly deleted: PrunedBackup[];
  /** Backup ids with a timestamp in the future (kept). */
  readonly future: string[];
  /** Why nothing was deleted, when pruning was skipped. */
  readonly skipped: string | null;
  /** Prefixes without a manifest, older than a day: debris of crashed uploads. */
  readonly orphans: { readonly id: string; readonly keys: number; readonly lastModified: string }[];
  /** Manifests that exist but do not parse: left alone, reported. */
  readonly damaged: { readonly key: string; readonly reason: string }[];
  readonly abortedUploads: number;
}

interface Candidate extends RetentionCandidate {
  readonly stored: StoredBackup;
  readonly manifestKey: string;
}

/**
 * Applies the retention policy to one target's backups in the bucket, removes debris of crashed
 * uploads, and aborts their incomplete multipart uploads. Called by `prune` and by the worker
 * after each successful upload.
 *
 * Deletion order: the manifest first, then the artifacts. A prune interrupted half way leaves
 * artifacts without a manifest — debris the next prune removes — never a manifest that points
 * at missing artifacts, which list/restore would take for a complete backup.
 */
export async function pruneTarget(input: PruneInput): Promise<PruneResult> {
  const { store, prefix, target, policy, logger } = input;
  const dryRun = input.dryRun ?? false;
  const now = input.now ?? new Date();
  const orphanAge = input.orphanMinAgeMs ?? orphanMinAgeMs;
  const log = logger.child({ target, dryRun });

  const stored = await scanTarget(store, prefix, target);
  const damaged: { key: string; reason: string }[] = [];
  const orphans = stored.filter((s) => s.manifestKey === null && now.getTime() - s.lastModified.getTime() >= orphanAge);
  const read = await readManifests(store, stored, {
    onDamaged: (key, reason) => {
      damaged.push({ key, reason });
      log.warn({ manifestKey: key, reason }, 'manifest unreadable: left alone; check it by hand');
    },
  });
  const candidates: Candidate[] = read.map(({ stored: s, manifest }) => {
    const at = new Date(manifest.createdAt);
    return {
      id: s.id,
      // An unparsable time must not make a backup look ancient: fall back to when it was written.
      at: Number.isNaN(at.getTime()) ? s.lastModified : at,
      bytes: manifest.artifacts.reduce((sum, a) => sum + a.bytes, 0),
      stored: s,
      manifestKey: s.manifestKey,
    };
  });

  const plan = planRetention(candidates, policy, now, target);
  if (plan.skipped) log.warn({ reason: plan.skipped }, 'pruning skipped');
  if (plan.future.length > 0) log.warn({ ids: plan.future.map((b) => b.id) }, 'backups with timestamps in the future: kept');

  const describe = (b: Candidate): PrunedBackup => ({ id: b.id, at: b.at.toISOString(), bytes: b.bytes, reason: plan.reasons[b.id] ?? '' });
  if (!dryRun) {
    for (const b of plan.delete) {
      await store.deleteMany([b.manifestKey]);
      await store.deleteMany(b.stored.keys.filter((k) => k !== b.manifestKey));
      log.info({ backupId: b.id, reason: plan.reasons[b.id] }, 'backup deleted');
    }
    for (const o of orphans) {
      await store.deleteMany(o.keys);
      log.info({ backupId: o.id, keys: o.keys.length }, 'debris without manifest deleted');
    }
  }
  const abortedUploads = dryRun ? 0 : await store.abortIncompleteUploads(targetPrefix(prefix, target), new Date(now.getTime() - orphanAge));
  if (abortedUploads > 0) log.info({ abortedUploads }, 'incomplete multipart uploads aborted');

  return {
    target,
    dryRun,
    kept: plan.keep.map(describe),
    deleted: plan.delete.map(describe),
    future: plan.future.map((b) => b.id),
    skipped: plan.skipped,
    orphans: orphans.map((o) => ({ id: o.id, keys: o.keys.length, lastModified: o.lastModified.toISOString() })),
    damaged,
    abortedUploads,
  };
}
