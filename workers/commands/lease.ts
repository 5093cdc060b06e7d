import { userInfo } from 'node:os';
import { exitCodes, requiredString, UsageError, type CliCommand } from '../../src/cli/command.ts';
import { confirm } from '../../src/cli/confirm.ts';
import { findTarget } from '../../src/config/load.ts';
import { fleetLeaseFor } from '../../src/locks/fleet-lease.ts';
import { leaseHoldReason } from '../../src/locks/lease-hold-reason.ts';
import { openRedis } from '../../src/redis/connection.ts';

/**
 * `lease release --target NAME --force`: frees the fleet slot of an appliance that was stopped
 * and could not be confirmed running (the watchdog keeps retrying it with backoff, and the slot
 * stays taken so that no other appliance stops meanwhile). Only an operator who has checked the
 * appliance — services running, or deliberately down — should do this; it is logged with who did
 * it. A slot whose holder is still renewing it (a backup or restore in progress) is never freed.
 */
export const command: CliCommand = {
  name: 'lease',
  summary: 'lease release --target NAME --force: free the fleet quiesce slot an appliance holds after its services could not be confirmed running (asks for confirmation unless --yes).',
  usage: 'release --target NAME --force [--yes] [--config fleet.yaml] [--json]',
  subcommands: ['release'],
  options: {
    target: { type: 'string', short: 't' },
    force: { type: 'boolean', default: false },
    yes: { type: 'boolean', short: 'y', default: false },
  },
  async run(ctx) {
    const [action, ...rest] = ctx.positionals;
    if (action !== 'release' || rest.length > 0) throw new UsageError(`lease: expected \`lease release --target NAME --force\`, got \`lease ${ctx.positionals.join(' ')}\``);
    const name = requiredString(ctx.values, 'target', 'name the appliance whose fleet slot to free, as in fleet.yaml targets[].name');
    if (ctx.values['force'] !== true) {
      throw new UsageError(
        `--force: required. The watchdog frees ${name}'s slot by itself once it has started its services; --force frees it without that, for an operator who has checked the appliance`,
      );
    }
    const yes = ctx.values['yes'] === true;
    const config = ctx.config();
    findTarget(config, name);
    const interactive = process.stdin.isTTY === true && process.stderr.isTTY === true;
    if (!yes && !interactive) throw new UsageError(`--yes: required without a terminal; confirm that ${name}'s services were checked by hand`);

    const redis = await openRedis(config.redis, 'command', (err) => ctx.logger.debug({ err: err.message }, 'redis connection error'), ctx.signal, (message) => ctx.logger.warn(message));
    try {
      const lease = fleetLeaseFor(config, redis, { logger: ctx.logger });
      const now = await lease.redisNow();
      const entry = (await lease.holders()).find((h) => h.target === name);
      if (!entry) {
        ctx.say(`${name} holds no fleet slot; nothing to release`);
        if (ctx.json) ctx.out(JSON.stringify({ target: name, released: false, reason: 'not held' }));
        return exitCodes.ok;
      }
      const why = leaseHoldReason(entry, now);
      if (why === null) {
        ctx.say(`${name}'s slot is held by ${entry.holder}, which is still renewing it (a backup or restore is running); not releasing it. Wait for it, or stop that process (its services are started again).`);
        if (ctx.json) ctx.out(JSON.stringify({ target: name, released: false, reason: 'held by a live process', holder: entry.holder }));
        return exitCodes.failed;
      }
      if (!yes) {
        const ok = await confirm(
          `${name} holds the fleet slot: ${why}.\nFree it? Do this only if you have checked ${name}: other appliances will then be stopped for their backups. [y/N] `,
          ctx.signal,
        );
        if (!ok) {
          ctx.say('not released; nothing was changed');
          return exitCodes.badInput;
        }
      }
      const freed = await lease.forceRelease(entry);
      let operator = 'unknown';
      try {
        operator = userInfo().username;
      } catch {
        // No passwd entry (a container's arbitrary uid): the log still has the pid and time.
      }
      ctx.logger.warn({ target: name, operator, holder: freed?.holder, token: freed?.token, why }, 'fleet slot released by an operator (--force)');
      ctx.say(freed ? `released ${name}'s fleet slot` : `${name}'s slot was freed meanwhile (the watchdog may have restarted it)`);
      if (ctx.json) ctx.out(JSON.stringify({ target: name, released: freed !== null, ...(freed ? { holder: freed.holder, why } : {}) }));
      return exitCodes.ok;
    } finally {
      redis.disconnect();
    }
  },
};
