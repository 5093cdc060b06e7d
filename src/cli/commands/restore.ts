import { confirm } from '../confirm.ts';
import { Redis } from 'ioredis';
import { findBackup } from '../../catalog/catalog.ts';
import { findTarget } from '../../config/load.ts';
import { BackupError, errorCode, errorMessage } from '../../errors.ts';
import { createExecutor } from '../../executors/index.ts';
import { listKept, pruneKept, rollbackRestore } from '../../restore/kept-databases.ts';
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
  usage:
    '--target NAME [--backup ID|latest] [--into OTHER] [--yes] | --target NAME --rollback [--kept RUN] [--yes] | --target NAME --list-kept | ' +
    '--target NAME --prune-kept --older-than-days N [--dry-run]   [--config fleet.yaml] [--json]',
  options: {
    target: { type: 'string', short: 't' },
    backup: { type: 'string', short: 'b' },
    into: { type: 'string' },
    yes: { type: 'boolean', short: 'y', default: false },
    rollback: { type: 'boolean', default: false },
    kept: { type: 'string' },
    'list-kept': { type: 'boolean', default: false },
    'prune-kept': { type: 'boolean', default: false },
    'older-than-days': { type: 'string' },
    'dry-run': { type: 'boolean', default: false },
  },
  async run(ctx) {
    const name = requiredString(ctx.values, 'target', 'name the appliance whose backup to restore, as in fleet.yaml targets[].name');
    const modes = (['rollback', 'list-kept', 'prune-kept'] as const).filter((m) => ctx.values[m] === true);
    if (modes.length > 1) throw new UsageError(`--${modes[0] ?? ''} and --${modes[1] ?? ''}: choose one`);
    if (modes[0] !== undefined) return keptCommand(ctx, name, modes[0]);
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
      const redis = new Redis(config.redis.url, { maxRetriesPerRequest: 2, connectTimeout: 5000, retryStrategy: (n) => (n > 5 ? null : n * 200) });
      redis.on('error', (err) => logger.debug({ err }, 'redis connection error'));
      const progress = restoreProgress(ctx, `${name} → ${target.name}`);
      try {
        const outcome = await restoreBackup({ config, source: name, target, backup: entry, store, executor, redis, logger, signal: ctx.signal, onProgress: (e) => progress.update(e) });
        progress.done();
        if (ctx.json) ctx.out(JSON.stringify({ restore: { ...outcome, bucket: config.s3.bucket, ok: true } }));
        else {
          const kept = outcome.kept.length > 0 ? `; the replaced databases are kept as ${outcome.kept.map((k) => k.keptAs).join(', ')} (restore --rollback --target ${target.name} swaps them back, --prune-kept drops old ones)` : '';
          ctx.out(`${target.name}: restored backup ${outcome.id} of ${outcome.source} (${outcome.restored.join(', ')}); services were down for ${formatDuration(outcome.downtimeMs)} and are running again${kept}`);
        }
        return exitCodes.ok;
      } catch (err) {
        progress.done();
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

/** `--rollback`, `--list-kept`, `--prune-kept`: the databases earlier restores kept on the appliance. */
async function keptCommand(ctx: CliContext, name: string, mode: 'rollback' | 'list-kept' | 'prune-kept'): Promise<number> {
  for (const other of ['backup', 'into']) {
    if (ctx.values[other] !== undefined) throw new UsageError(`--${other}: not used with --${mode}`);
  }
  let olderThanDays = 0;
  if (mode === 'prune-kept') {
    const raw = stringOption(ctx.values, 'older-than-days');
    if (raw === undefined || !/^\d+$/.test(raw)) throw new UsageError(`--older-than-days: required with --prune-kept, a whole number of days (0 drops every kept database), got ${raw === undefined ? 'nothing' : JSON.stringify(raw)}`);
    olderThanDays = Number(raw);
  }
  const config = ctx.config();
  const target = findTarget(config, name);
  if (mode === 'rollback' && ctx.values['yes'] !== true && !(process.stdin.isTTY === true && process.stderr.isTTY === true)) {
    throw new UsageError(`--yes: required without a terminal; rollback stops the services of ${target.name} and swaps its databases back. Pass --yes to confirm.`);
  }
  const logger = ctx.logger.child({ target: target.name });
  const executor = createExecutor(target.executor, logger);
  const redis = mode === 'list-kept' ? null : new Redis(config.redis.url, { maxRetriesPerRequest: 2, connectTimeout: 5000, retryStrategy: (n) => (n > 5 ? null : n * 200) });
  redis?.on('error', (err) => logger.debug({ err }, 'redis connection error'));
  const base = { config, target, executor, logger, signal: ctx.signal };
  try {
    if (mode === 'list-kept') {
      const kept = await listKept(base);
      if (ctx.json) ctx.out(JSON.stringify({ kept }));
      else if (kept.length === 0) ctx.out(`${target.name}: no kept databases`);
      else ctx.out(kept.map((k) => `${k.run}  ${k.at}  ${k.artifact}: ${k.kept} (was ${k.database})`).join('\n'));
      return exitCodes.ok;
    }
    if (!redis) throw new Error('unreachable: no Redis');
    if (mode === 'prune-kept') {
      const outcome = await pruneKept({ ...base, redis, olderThanDays, dryRun: ctx.values['dry-run'] === true });
      if (ctx.json) ctx.out(JSON.stringify({ pruneKept: outcome }));
      else {
        const verb = outcome.dryRun ? 'would drop' : 'dropped';
        ctx.out(`${target.name}: ${verb} ${outcome.dropped.length} kept database(s)${outcome.dropped.length > 0 ? `: ${outcome.dropped.map((k) => k.kept).join(', ')}` : ''}; ${outcome.remaining.length} younger than ${olderThanDays} day(s) kept`);
      }
      return exitCodes.ok;
    }
    const run = stringOption(ctx.values, 'kept');
    if (ctx.values['yes'] !== true) {
      const ok = await confirm(`Roll ${target.name} back to the databases kept by restore ${run ?? '(the newest)'}? This stops its services and swaps its databases. [y/N] `, ctx.signal);
      if (!ok) {
        ctx.say('rollback cancelled; nothing was touched');
        return exitCodes.badInput;
      }
    }
    try {
      const outcome = await rollbackRestore({ ...base, redis, run });
      if (ctx.json) ctx.out(JSON.stringify({ rollback: { ...outcome, ok: true } }));
      else ctx.out(`${target.name}: rolled back to the databases kept by restore ${outcome.from} (${outcome.swapped.map((s) => `${s.database} ← ${s.restoredFrom}, replaced one kept as ${s.keptAs}`).join('; ')}); services were down for ${formatDuration(outcome.downtimeMs)}`);
      return exitCodes.ok;
    } catch (err) {
      if (errorCode(err) === 'ROLLBACK_NOTHING_KEPT') {
        if (ctx.json) ctx.out(JSON.stringify({ rollback: { target: target.name, ok: false }, error: { code: errorCode(err), message: errorMessage(err) } }));
        ctx.say(errorMessage(err));
        return exitCodes.badInput;
      }
      throw err;
    }
  } finally {
    redis?.disconnect();
    await executor.close();
  }
}
