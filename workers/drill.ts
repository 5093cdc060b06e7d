import type { CliContext } from '../src/cli/command.ts';
import { findTarget, type Config } from '../src/config/load.ts';
import { errorMessage } from '../src/errors.ts';
import { createExecutor } from '../src/executors/index.ts';
import type { BackupJobResult } from '../src/fleet/backup-job.ts';
import { restoreBackup } from '../src/restore/restore.ts';
import { verifyBackup } from '../src/restore/verify.ts';
import { createS3ObjectStore } from '../src/storage/s3.ts';
import { connectRedis } from '../src/redis/connection.ts';

export interface DrillResult {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/**
 * The demo's drill on one fresh backup, as an operator would run it: `verify` (load both dumps
 * into scratch databases, check they load and agree), then `restore` onto the appliance itself
 * (checksums first, fleet lease, stop, restore, start, confirm).
 */
export async function runDrill(ctx: CliContext, config: Config, backup: BackupJobResult): Promise<DrillResult[]> {
  const store = createS3ObjectStore(config.s3, ctx.logger);
  const redis = connectRedis(config.redis, 'command');
  const target = findTarget(config, backup.target);
  const executor = createExecutor(target.executor, ctx.logger);
  const results: DrillResult[] = [];
  try {
    try {
      const report = await verifyBackup({ config, target: target.name, backup: backup.id, store, logger: ctx.logger, redis, signal: ctx.signal });
      const rows = report.databases.reduce((s, d) => s + (d.rows ?? 0), 0);
      const checks = report.checks.map((c) => `${c.name} ${c.status}`).join(', ');
      results.push({ name: `verify ${target.name} ${backup.id}`, ok: report.ok, detail: report.ok ? `both dumps load into scratch databases (${rows} rows); ${checks}` : report.message });
    } catch (err) {
      results.push({ name: `verify ${target.name} ${backup.id}`, ok: false, detail: errorMessage(err) });
    }
    try {
      const outcome = await restoreBackup({ config, source: target.name, target, backup: backup.id, store, executor, redis, logger: ctx.logger, signal: ctx.signal });
      results.push({ name: `restore ${target.name} ${backup.id}`, ok: true, detail: `restored ${outcome.restored.join(', ')} with services down ${outcome.downtimeMs} ms; services running again` });
    } catch (err) {
      results.push({ name: `restore ${target.name} ${backup.id}`, ok: false, detail: errorMessage(err) });
    }
    return results;
  } finally {
    store.close();
    redis.disconnect();
    await executor.close();
  }
}
