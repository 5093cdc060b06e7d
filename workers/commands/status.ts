import { exitCodes, type CliCommand } from '../../src/cli/command.ts';
import { formatBytes, formatDuration } from '../../src/format.ts';
import { fleetLeaseFor } from '../../src/locks/fleet-lease.ts';
import { leaseHoldReason } from '../../src/locks/lease-hold-reason.ts';
import { FleetState } from '../../src/state/fleet-state.ts';
import { nextRuns } from '../producer.ts';
import { asRedisUnreachable, openRedis } from '../../src/redis/connection.ts';

export const command: CliCommand = {
  name: 'status',
  summary: 'Per target: the last good backup and its age, the step running now, the last failure and why, the next scheduled run; and who holds the fleet quiesce lease.',
  usage: '[--config fleet.yaml] [--json]',
  options: {},
  async run(ctx) {
    const config = ctx.config();
    const redis = await openRedis(config.redis, 'command', (err) => ctx.logger.debug({ err: err.message }, 'redis connection error'), ctx.signal, (message) => ctx.logger.warn(message));
    try {
      const state = new FleetState(redis, config.redis.prefix);
      const lease = fleetLeaseFor(config, redis, { logger: ctx.logger });
      const [states, holders, next] = await Promise.all([state.all(config.targets.map((t) => t.name)), lease.holders(), nextRuns(config, redis)]);
      const now = Date.now();
      const targets = states.map((s) => ({
        name: s.name,
        lastSuccess: s.lastSuccess
          ? { id: s.lastSuccess.id, at: s.lastSuccess.at, ageSeconds: Math.round((now - Date.parse(s.lastSuccess.at)) / 1000), bytes: s.lastSuccess.bytes, rawBytes: s.lastSuccess.rawBytes, quiesceMs: s.lastSuccess.quiesceMs, manifestKey: s.lastSuccess.manifestKey }
          : null,
        lastFailure: s.lastFailure ? { at: s.lastFailure.at, code: s.lastFailure.code, message: s.lastFailure.message } : null,
        step: s.step,
        nextRun: next.has(s.name) ? new Date(next.get(s.name) ?? 0).toISOString() : null,
        lastVerify: s.lastVerify,
        counts: { successes: s.successes, failures: s.failures, retries: s.retries, uploadRetries: s.uploadRetries },
      }));
      const leaseOut = holders.map((h) => {
        const why = leaseHoldReason(h, now);
        return { target: h.target, holder: h.holder, since: new Date(h.since).toISOString(), expired: h.expiresAt <= now, ...(h.rescuer ? { rescuer: h.rescuer } : {}), ...(why === null ? {} : { why }) };
      });
      if (ctx.json) {
        ctx.out(JSON.stringify({ targets, lease: leaseOut }));
        return exitCodes.ok;
      }
      const rows = [['TARGET', 'LAST GOOD', 'AGE', 'SIZE', 'DOWNTIME', 'NOW', 'LAST FAILURE', 'NEXT RUN']];
      for (const t of targets) {
        rows.push([
          t.name,
          t.lastSuccess?.id ?? 'never',
          t.lastSuccess ? formatDuration(t.lastSuccess.ageSeconds * 1000) : '-',
          t.lastSuccess ? formatBytes(t.lastSuccess.bytes) : '-',
          t.lastSuccess ? formatDuration(t.lastSuccess.quiesceMs) : '-',
          t.step ? [t.step.step, t.step.artifact].filter(Boolean).join(' ') : 'idle',
          t.lastFailure ? `${t.lastFailure.at.slice(0, 19)} ${t.lastFailure.code}` : '-',
          t.nextRun ?? '-',
        ]);
      }
      const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
      for (const r of rows) ctx.out(r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd());
      ctx.out('');
      ctx.out(leaseOut.length === 0 ? 'fleet lease: free' : `fleet lease: ${leaseOut.map((l) => `${l.target} held by ${l.holder} since ${l.since}${l.why ? ` (${l.why})` : l.expired ? ' (EXPIRED: watchdog restarting it)' : ''}`).join('; ')}`);
      for (const t of targets) if (t.lastFailure) ctx.out(`${t.name}: last failure ${t.lastFailure.code}: ${t.lastFailure.message}`);
      return exitCodes.ok;
    } catch (err) {
      throw asRedisUnreachable(err, redis, config.redis);
    } finally {
      redis.disconnect();
    }
  },
};
