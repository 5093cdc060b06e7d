import { confirm } from '../confirm.ts';
import { asRedisUnreachable, connectRedis } from '../../redis/connection.ts';
import { findBackup } from '../../catalog/catalog.ts';
import { findTarget } from '../../config/load.ts';
import { BackupError, errorCode, errorMessage } from '../../errors.ts';
import { createExecutor } from '../../executors/index.ts';
import { restoreBackup, type RestoreProgress } from '../../restore/restore.ts';
import { createS3ObjectStore } from '../../storage/s3.ts';
import { exitCodes, requiredString, stringOption, UsageError, type CliCommand, type CliContext } from '../command.ts';
import { formatBytes, formatDuration } from '../progress.ts';
import { reportBackupNotFound } from './list.ts';

/** One live line on a terminal; one line per step otherwise. */
function restoreProgress(ctx: CliContext, label: string): { update: (e: RestoreProgress) => void; done: () => void } {
  const live = ctx.tty && !ctx.json;
  let last = '';
  let drawn = false;
  return {
    update(e) {
      const step = `${e.step}${e.artifact ? ` ${e.artifact}` : ''}`;
      if (live) {
        const detail = e.bytes !== undefined ? ` ${formatBytes(e.bytes)}${e.totalBytes ? ` of ${formatBytes(e.totalBytes)}` : ''}` : '';
        process.stderr.write(`\r\x1b[K${label}: ${step}${detail}`);
        drawn = true;
      } else if (step !== last) {
        ctx.say(`${label}: ${step}`);
      }
      last = step;
    },
    done() {
      if (drawn) process.stderr.write('\r\x1b[K');
      drawn = false;
    },
  };
}

export const command: CliCommand = {
  name: 'restore',
  summary:
    'Restore a backup onto an appliance: download and check every artifact first, then take the target lock and a fleet quiesce slot, ' +
    "stop the services, restore each database with the profile's restore command, start the services and confirm them. " +
    '--into restores onto another appliance of the config (e.g. a freshly installed vCenter). Asks for confirmation unless --yes.',
  usage: '--target NAME [--backup ID|latest] [--into OTHER] [--yes] [--config fleet.yaml] [--json]',
  options: {
    target: { type: 'string', short: 't' },
    backup: { type: 'string', short: 'b' },
    into: { type: 'string' },
    yes: { type: 'boolean', short: 'y', default: false },
  },
  async run(ctx) {
    const name = requiredString(ctx.values, 'target', 'name the appliance whose backup to restore, as in fleet.yaml targets[].name');
    const backupId = stringOption(ctx.values, 'backup') ?? 'latest';
    const intoName = stringOption(ctx.values, 'into') ?? name;
    const yes = ctx.values['yes'] === true;
    const config = ctx.config();
    findTarget(config, name);
    const target = findTarget(config, intoName);
    const interactive = process.stdin.isTTY === true && process.stderr.isTTY === true;
    if (!yes && !interactive) {
      throw new UsageError(`--yes: required without a terminal; restore stops the services of ${target.name} and replaces its databases. Pass --yes to confirm.`);
    }

    const logger = ctx.logger.child({ source: name, target: target.name });
    const store = createS3ObjectStore(config.s3, logger);
    try {
      let entry;
      try {
        entry = await findBackup(store, config.s3.prefix, name, backupId, { logger });
      } catch (err) {
        const code = reportBackupNotFound(ctx, err);
        if (code !== null) return code;
        throw err;
      }
      if (!yes) {
        const what = `backup ${entry.id} of ${name} (taken ${entry.at.toISOString()}, ${entry.manifest.artifacts.map((a) => a.name).join(' + ')}, ${formatBytes(entry.bytes)})`;
        const ok = await confirm(`Restore ${what} onto ${target.name}? This stops its services and replaces its databases. [y/N] `, ctx.signal);
        if (!ok) {
          ctx.say('restore cancelled; nothing was touched');
          return exitCodes.badInput;
        }
      }

      const executor = createExecutor(target.executor, logger);
      const redis = connectRedis(config.redis, 'command', { onError: (err) => logger.debug({ err }, 'redis connection error') });
      const progress = restoreProgress(ctx, `${name} → ${target.name}`);
      try {
        const outcome = await restoreBackup({ config, source: name, target, backup: entry, store, executor, redis, logger, signal: ctx.signal, onProgress: (e) => progress.update(e) });
        progress.done();
        if (ctx.json) ctx.out(JSON.stringify({ restore: { ...outcome, bucket: config.s3.bucket, ok: true } }));
        else {
          ctx.out(`${target.name}: restored backup ${outcome.id} of ${outcome.source} (${outcome.restored.join(', ')}); services were down for ${formatDuration(outcome.downtimeMs)} and are running again`);
        }
        return exitCodes.ok;
      } catch (thrown) {
        progress.done();
        const err = asRedisUnreachable(thrown, redis, config.redis);
        const details = err instanceof BackupError ? err.details : {};
        if (ctx.json) {
          ctx.out(JSON.stringify({ restore: { source: name, target: target.name, id: entry.id, ok: false, restored: details['restored'] ?? [], notRestored: details['notRestored'] ?? entry.manifest.artifacts.map((a) => a.name) }, error: { code: errorCode(err), message: errorMessage(err) } }));
        }
        ctx.say(`${target.name}: restore failed (${errorCode(err)}): ${errorMessage(err)}`);
        return exitCodes.failed;
      } finally {
        redis.disconnect();
        await executor.close();
      }
    } finally {
      store.close();
    }
  },
};
