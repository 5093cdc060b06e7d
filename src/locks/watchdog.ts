import type { Config } from '../config/load.ts';
import type { Executor } from '../executors/executor.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { FleetHeldNotifier } from '../notify/notifier.ts';
import { startAndConfirm } from '../quiesce/with-quiesced-appliance.ts';
import type { FleetLease, LeaseEntry } from './fleet-lease.ts';

export interface WatchdogOptions {
  readonly config: Config;
  readonly lease: FleetLease;
  readonly makeExecutor: (target: Config['targets'][number]) => Executor;
  readonly logger: Logger;
  /** Identifies this watchdog in claims. */
  readonly rescuerId: string;
  /** Told when an appliance keeps the fleet slot because its services cannot be confirmed. */
  readonly notifier?: FleetHeldNotifier | undefined;
}

/**
 * After a rescue that could not confirm the services, the next try waits the watchdog interval,
 * doubling per failure up to this: an appliance that stays unreachable is retried every ten
 * minutes, not every few seconds for ever.
 */
export const watchdogBackoffCapMs = 10 * 60_000;

/**
 * Restores invariant 2 when a worker dies (or hangs, or loses Redis) while its appliance is
 * quiesced: for every fleet-lease entry that has expired, claim it, start that appliance's
 * services, confirm them, and only then free the slot. A claim has its own expiry, so a
 * watchdog that dies mid-rescue is replaced by another. Every worker process runs one.
 */
export class Watchdog {
  readonly #options: WatchdogOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(options: WatchdogOptions) {
    this.#options = options;
  }

  start(): void {
    const intervalMs = this.#options.config.quiesce.watchdogIntervalSeconds * 1000;
    const tick = (): void => {
      if (this.#stopped) return;
      this.#running = this.sweep()
        .then(() => undefined)
        .catch((err: unknown) => this.#options.logger.warn({ err }, 'watchdog sweep failed'))
        .finally(() => {
          if (!this.#stopped) this.#timer = setTimeout(tick, intervalMs);
        });
    };
    this.#timer = setTimeout(tick, Math.min(intervalMs, 1000));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /** One pass over the lease table. Returns the targets it rescued. */
  async sweep(): Promise<string[]> {
    const { lease, logger } = this.#options;
    const now = await lease.redisNow();
    const rescued: string[] = [];
    for (const entry of await lease.holders()) {
      if (entry.expiresAt > now) continue;
      if (entry.rescuer && entry.rescuer !== this.#options.rescuerId && (entry.rescueUntil ?? 0) > now) continue;
      if ((entry.nextRescueAt ?? 0) > now) continue; // backing off after failed rescues
      if (await this.#rescue(entry)) rescued.push(entry.target);
      else logger.debug({ target: entry.target }, 'watchdog: not rescued this time');
    }
    return rescued;
  }

  async #rescue(entry: LeaseEntry): Promise<boolean> {
    const { config, lease, logger, rescuerId } = this.#options;
    const log = logger.child({ target: entry.target, step: 'watchdog', deadHolder: entry.holder, token: entry.token });
    const target = config.targets.find((t) => t.name === entry.target);
    if (!target) {
      log.error('watchdog: an expired lease names a target this worker does not know; it cannot start its services. Check that every worker has the same fleet.yaml');
      return false;
    }
    const claimMs = Math.max(60_000, target.timeouts.serviceSeconds * 1000 * Math.max(1, target.boundProfile.services.length) * 2);
    if (!(await lease.claimExpired(entry, rescuerId, claimMs))) return false;
    log.warn('watchdog: fleet lease expired while the appliance may be quiesced; starting its services');
    const executor = this.#options.makeExecutor(target);
    try {
      await startAndConfirm({ target, executor, logger: log });
      const freed = await lease.freeRescued(entry, rescuerId);
      log.warn({ freed }, 'watchdog: services confirmed running; fleet slot freed');
      return freed;
    } catch (err) {
      // Keep the slot: freeing it would let another appliance stop while this one is down.
      const failures = await lease
        .rescueFailed(entry, rescuerId, errorMessage(err), { baseMs: config.quiesce.watchdogIntervalSeconds * 1000, capMs: watchdogBackoffCapMs })
        .catch(() => 0);
      log.error({ err, failures }, 'watchdog: could not confirm the services; the slot stays taken, retried with backoff. An operator who has checked the appliance can free it with `vcsa-backup lease release --target <name> --force`');
      if (failures === 1) {
        const message = `${entry.abandoned ? `${entry.abandoned.reason}; ` : ''}the watchdog could not start its services: ${errorMessage(err)}`;
        await this.#options.notifier?.fleetHeld(entry.target, { at: new Date().toISOString(), message }).catch(() => undefined);
      }
      return false;
    } finally {
      await executor.close().catch(() => undefined);
    }
  }
}
