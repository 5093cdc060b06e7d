import type { Config } from '../src/config/load.ts';
import type { BackupJobDeps } from '../src/fleet/backup-job.ts';
import { afterBackup } from '../src/retention/after-backup.ts';
import type { ObjectStore } from '../src/storage/object-store.ts';
import { connectRedis } from '../src/redis/connection.ts';

/**
 * What runs after each committed backup: the restore drill (verify.afterBackup), then retention
 * (retention.afterBackup). Failures are logged by the caller and never fail the backup.
 */
export function afterBackupTasks(config: Config, store: ObjectStore): BackupJobDeps['afterBackup'] {
  return async (target, result, logger, hooks) => {
    if (!config.verify.afterBackup && !config.retention.afterBackup) return;
    // A short-lived connection: this runs once per backup, and records the drill for `status`.
    const redis = config.verify.afterBackup ? connectRedis(config.redis, 'command', { onError: (err) => logger.debug({ err }, 'redis connection error') }) : undefined;
    try {
      const outcome = await afterBackup({ config, target: target.name, id: result.manifest.id, store, logger, ...(redis ? { redis } : {}), ...(hooks ? { onStep: (step) => hooks.onStep(step), onVerified: (ok) => hooks.onVerified(ok) } : {}) });
      if (outcome.prune) logger.info({ kept: outcome.prune.kept.length, deleted: outcome.prune.deleted.length, skipped: outcome.prune.skipped }, 'retention applied');
    } finally {
      redis?.disconnect();
    }
  };
}
