import { findTarget } from '../../src/config/load.ts';
import { exitCodes, stringList, UsageError, type CliCommand } from '../../src/cli/command.ts';
import { formatBytes, formatDuration } from '../../src/format.ts';
import { ProgressPrinter } from '../../src/cli/progress.ts';
import type { ProgressEvent } from '../../src/backup/progress.ts';
import { enqueueBackups, waitForJobs } from '../producer.ts';
import { asRedisUnreachable, openRedis } from '../../src/redis/connection.ts';

export const command: CliCommand = {
  name: 'run',
  summary:
    'Enqueue a backup now for the named targets (default: every enabled target). With --wait, follow them to the end and exit 0 only if all succeeded. ' +
    'A target that already has a backup queued or running is not queued twice; --wait follows the existing one.',
  usage: '[--target NAME ...] [--wait] [--config fleet.yaml] [--json]',
  options: { target: { type: 'string', short: 't', multiple: true }, wait: { type: 'boolean', default: false } },
  async run(ctx) {
    const config = ctx.config();
    const names = stringList(ctx.values, 'target');
    const targets = names.length > 0 ? names.map((n) => findTarget(config, n).name) : config.targets.filter((t) => t.enabled).map((t) => t.name);
    if (targets.length === 0) throw new UsageError('--target: no enabled targets in the config; name one with --target');
    const redis = await openRedis(config.redis, 'command', (err) => ctx.logger.debug({ err: err.message }, 'redis connection error'), ctx.signal, (message) => ctx.logger.warn(message));
    try {
      const runId = `r${Date.now()}`;
      const jobs = await enqueueBackups(config, redis, targets, runId);
      for (const j of jobs) ctx.say(`${j.target}: ${j.alreadyQueued ? `already queued or running as ${j.jobId}` : `queued as ${j.jobId}`}`);
      if (ctx.values['wait'] !== true) {
        if (ctx.json) ctx.out(JSON.stringify({ runId, jobs }));
        return exitCodes.ok;
      }
      const progress = new ProgressPrinter(ctx.tty && !ctx.json, ctx.say);
      const outcomes = await waitForJobs(config, redis, jobs, {
        signal: ctx.signal,
        onProgress: (target, p, state) => {
          if (p && typeof p === 'object' && 'step' in p) progress.update(p as ProgressEvent);
          else if (state === 'waiting' || state === 'delayed') progress.update({ target, step: 'precheck' });
        },
      });
      progress.done();
      const backups = [];
      const failures = [];
      for (const o of outcomes) {
        if (o.ok) {
          backups.push({ ...o.result, bucket: config.s3.bucket });
          const bytes = o.result.artifacts.reduce((s, a) => s + a.bytes, 0);
          ctx.say(`${o.target}: ok ${o.result.id} (services down ${formatDuration(o.result.quiesceMs)}, ${formatBytes(bytes)})`);
        } else {
          failures.push({ target: o.target, code: o.code, message: o.message });
          ctx.say(`${o.target}: FAILED ${o.code}: ${o.message}`);
        }
      }
      if (ctx.json) ctx.out(JSON.stringify({ runId, backups, failures }));
      return failures.length === 0 ? exitCodes.ok : exitCodes.failed;
    } catch (err) {
      throw asRedisUnreachable(err, redis, config.redis);
    } finally {
      redis.disconnect();
    }
  },
};
