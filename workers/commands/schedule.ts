import { exitCodes, type CliCommand } from '../../src/cli/command.ts';
import { syncSchedules } from '../producer.ts';
import { asRedisUnreachable, openRedis } from '../../src/redis/connection.ts';

export const command: CliCommand = {
  name: 'schedule',
  summary:
    'Make the queue\'s job schedulers match fleet.yaml: one per enabled target, from its schedule (cron + time zone) or the fleet\'s; schedulers of removed targets are removed. ' +
    'Workers turn each tick into a backup job. Run it after every change to fleet.yaml.',
  usage: '[--config fleet.yaml] [--json]',
  options: {},
  async run(ctx) {
    const config = ctx.config();
    const redis = await openRedis(config.redis, 'command', (err) => ctx.logger.debug({ err: err.message }, 'redis connection error'), ctx.signal, (message) => ctx.logger.warn(message));
    try {
      const { upserted, removed } = await syncSchedules(config, redis);
      if (ctx.json) {
        ctx.out(JSON.stringify({ schedules: upserted.map((s) => ({ ...s, next: s.next ? new Date(s.next).toISOString() : null })), removed }));
      } else {
        for (const s of upserted) ctx.out(`${s.target.padEnd(20)} ${s.cron.padEnd(16)} ${s.tz.padEnd(20)} next ${s.next ? new Date(s.next).toISOString() : '-'}`);
        for (const r of removed) ctx.out(`${r.padEnd(20)} schedule removed`);
      }
      return exitCodes.ok;
    } catch (err) {
      throw asRedisUnreachable(err, redis, config.redis);
    } finally {
      redis.disconnect();
    }
  },
};
