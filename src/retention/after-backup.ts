import type { Redis } from 'ioredis';
import type { Config } from '../config/load.ts';
import type { Logger } from '../log.ts';
import { verifyBackup, type VerifyReport } from '../restore/verify.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { policyFromConfig } from './policy.ts';
import { pruneTarget, type PruneResult } from './prune.ts';

export interface AfterBackupInput {
  readonly config: Config;
  readonly target: string;
  /** The backup just committed. */
  readonly id: string;
  readonly store: ObjectStore;
  readonly logger: Logger;
  /** Records the verification for `status` and the dashboard. */
  readonly redis?: Redis;
  readonly signal?: AbortSignal;
  /** Told when each task starts and how the drill went (the run's timeline). */
  readonly onStep?: (step: 'verify' | 'retention') => void;
  readonly onVerified?: (ok: boolean) => void;
}

export interface AfterBackupOutcome {
  readonly verify: VerifyReport | null;
  readonly prune: PruneResult | null;
  /** Why pruning did not run, when it did not. */
  readonly pruneSkipped: string | null;
}

/**
 * What follows a committed backup: the restore drill (verify.afterBackup), then retention
 * (retention.afterBackup). A backup that fails its drill is not a good newest backup, so
 * nothing older is pruned on its account. Errors propagate: the caller logs them and never
 * fails the backup for them.
 */
export async function afterBackup(input: AfterBackupInput): Promise<AfterBackupOutcome> {
  const { config, target, store, logger } = input;
  let verify: VerifyReport | null = null;
  if (config.verify.afterBackup) {
    input.onStep?.('verify');
    verify = await verifyBackup({ config, target, backup: input.id, store, logger, ...(input.redis ? { redis: input.redis } : {}), ...(input.signal ? { signal: input.signal } : {}) });
  }
  if (verify) input.onVerified?.(verify.ok);
  if (!config.retention.afterBackup) return { verify, prune: null, pruneSkipped: 'retention.afterBackup is false' };
  if (verify && !verify.ok) {
    const why = `backup ${input.id} failed verification; not pruning older backups on its account`;
    logger.warn({ target, backupId: input.id }, why);
    return { verify, prune: null, pruneSkipped: why };
  }
  input.onStep?.('retention');
  const prune = await pruneTarget({ store, prefix: config.s3.prefix, target, policy: policyFromConfig(config.retention), logger });
  return { verify, prune, pruneSkipped: null };
}
