import { asRedisUnreachable, connectRedis } from '../../redis/connection.ts';
import { findTarget } from '../../config/load.ts';
import { verifyBackup, type VerifyReport } from '../../restore/verify.ts';
import { createS3ObjectStore } from '../../storage/s3.ts';
import { exitCodes, requiredString, stringOption, type CliCommand } from '../command.ts';
import { formatBytes, formatDuration } from '../../format.ts';
import { ProgressPrinter } from '../progress.ts';
import { reportBackupNotFound, table } from './list.ts';

function human(report: VerifyReport): string {
  const lines = [`${report.target}: backup ${report.id} ${report.ok ? 'VERIFIED' : 'FAILED verification'} in ${formatDuration(report.ms)} (checksums: ${report.checksums})`];
  for (const db of report.databases) {
    lines.push(`  ${db.name} (${db.format}, ${formatBytes(db.rawBytes)} dump): ${db.loaded ? `loads in ${formatDuration(db.loadMs)}: ${db.tables.length} tables, ${db.rows} rows, ${formatBytes(db.bytes)}` : `does NOT load: ${db.error ?? ''}`}`);
    if (db.tables.length > 0) {
      lines.push(table([['    TABLE', 'ROWS', 'SIZE'], ...db.tables.map((t) => [`    ${t.name}`, String(t.rows), formatBytes(t.bytes)])]));
    }
  }
  for (const c of report.checks) lines.push(`  check ${c.name}: ${c.status}: ${c.message}`);
  if (report.checks.length === 0 && report.databases.every((d) => d.loaded) && report.databases.length > 0) lines.push(`  no consistency checks for profile ${report.profile}`);
  for (const p of report.problems) lines.push(`  problem: ${p}`);
  return lines.join('\n');
}

export const command: CliCommand = {
  name: 'verify',
  summary:
    'A restore drill that never touches the appliance: download a backup, check it against its manifest, load each dump into a fresh scratch ' +
    'database on verify.scratchUrl, count rows, check the databases agree with each other, drop the scratch databases. Exit 1 on any problem. ' +
    'The result is recorded for `status` and the dashboard.',
  usage: '--target NAME [--backup ID|latest] [--keep] [--config fleet.yaml] [--json]',
  options: {
    target: { type: 'string', short: 't' },
    backup: { type: 'string', short: 'b' },
    keep: { type: 'boolean', default: false },
  },
  async run(ctx) {
    const name = requiredString(ctx.values, 'target', 'name the appliance whose backup to verify, as in fleet.yaml targets[].name');
    const backup = stringOption(ctx.values, 'backup') ?? 'latest';
    const config = ctx.config();
    findTarget(config, name);
    const logger = ctx.logger.child({ target: name });
    const store = createS3ObjectStore(config.s3, logger);
    const redis = connectRedis(config.redis, 'command', { onError: (err) => logger.debug({ err }, 'redis connection error') });
    try {
      let report: VerifyReport;
      const progress = new ProgressPrinter(ctx.tty && !ctx.json, ctx.say);
      try {
        report = await verifyBackup({
          config,
          target: name,
          backup,
          store,
          logger,
          redis,
          signal: ctx.signal,
          keepDatabases: ctx.values['keep'] === true,
          onProgress: (e) => progress.update({ target: name, ...e }),
        });
        progress.done();
      } catch (err) {
        progress.done();
        const code = reportBackupNotFound(ctx, err);
        if (code !== null) return code;
        throw asRedisUnreachable(err, redis, config.redis);
      }
      if (ctx.json) ctx.out(JSON.stringify(report));
      else ctx.out(human(report));
      return report.ok ? exitCodes.ok : exitCodes.failed;
    } finally {
      redis.disconnect();
      store.close();
    }
  },
};
