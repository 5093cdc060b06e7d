import { findTarget } from '../../config/load.ts';
import { errorCode, errorMessage } from '../../errors.ts';
import { createExecutor } from '../../executors/index.ts';
import { createS3ObjectStore } from '../../storage/s3.ts';
import { backupSummary, runBackup } from '../../backup/run-backup.ts';
import type { ProgressEvent } from '../../backup/progress.ts';
import { isNativeTarget, runNativeBackup } from '../../native/native-job.ts';
import { exitCodes, requiredString, type CliCommand } from '../command.ts';
import { formatBytes, formatDuration } from '../../format.ts';
import { ProgressPrinter } from '../progress.ts';

export const command: CliCommand = {
  name: 'backup',
  summary:
    'Back up one appliance in this process, without the queue: stop services, dump, start services, gzip, upload, verify, manifest. ' +
    'The classic cron-on-the-appliance use, and debugging. It does not take the fleet lease: do not run it while workers back up the same fleet.',
  usage: '--target NAME [--config fleet.yaml] [--json]',
  options: { target: { type: 'string', short: 't' } },
  async run(ctx) {
    const name = requiredString(ctx.values, 'target', 'name the appliance to back up, as in fleet.yaml targets[].name');
    const config = ctx.config();
    const target = findTarget(config, name);
    const logger = ctx.logger.child({ target: target.name });
    const native = isNativeTarget(target);
    const executor = native ? undefined : createExecutor(target.executor, logger);
    const store = createS3ObjectStore(config.s3, logger);
    const progress = new ProgressPrinter(ctx.tty && !ctx.json, ctx.say);
    try {
      const onProgress = (e: ProgressEvent): void => progress.update(e);
      const outcome = executor
        ? await runBackup({ config, target, executor, store, logger, signal: ctx.signal, onProgress })
        : await runNativeBackup({ config, target, store, logger, signal: ctx.signal, onProgress });
      progress.done();
      const summary = backupSummary(config.s3.bucket, outcome);
      if (ctx.json) ctx.out(JSON.stringify({ backups: [summary], failures: [] }));
      else {
        const m = outcome.manifest;
        ctx.out(`${target.name}: backup ${m.id} committed as s3://${config.s3.bucket}/${outcome.manifestKey}`);
        if (m.native) ctx.out(`  the appliance's own backup: vCenter ${m.native.applianceVersion} build ${m.native.applianceBuild}, job ${m.native.applianceJobId}, parts ${m.native.parts.join(', ')}${m.native.passwordProtected ? ', password-protected' : ''}`);
        else ctx.out(`  services down for ${m.quiesce ? formatDuration(m.quiesce.ms) : '0 ms (quiescing off)'}`);
        for (const a of m.artifacts) ctx.out(`  ${a.file.padEnd(26)} ${formatBytes(a.bytes).padStart(10)}  sha256 ${a.sha256}`);
      }
      return exitCodes.ok;
    } catch (err) {
      progress.done();
      if (ctx.json) ctx.out(JSON.stringify({ backups: [], failures: [{ target: target.name, code: errorCode(err), message: errorMessage(err) }] }));
      ctx.say(`${target.name}: backup failed (${errorCode(err)}): ${errorMessage(err)}`);
      return exitCodes.failed;
    } finally {
      store.close();
      await executor?.close();
    }
  },
};
