import type { Redis } from 'ioredis';
import type { Config } from '../config/load.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { FleetLease, LeaseEntry } from '../locks/fleet-lease.ts';
import { ApplianceApi, quoteMessages } from './api-client.ts';
import { cancelBackupJobAndWait } from './backup-api.ts';
import { nativeJobsKey, type NativeJobRecord } from './native-job.ts';

/**
 * The native pool's watchdog: a worker that died (or hung, or lost Redis) while an appliance's
 * backup job ran leaves an expired native lease. Claim it, cancel that appliance's job if it is
 * still running (its receiver died with the worker, so nothing it sent can be committed: the
 * spool never got its spool.json), then free the slot. The queued job is retried by BullMQ and
 * starts a fresh appliance backup. Every worker process runs one.
 */
export class NativeWatchdog {
  readonly #config: Config;
  readonly #lease: FleetLease;
  readonly #redis: Redis;
  readonly #logger: Logger;
  readonly #rescuerId: string;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;
  #stopped = false;

  constructor(options: { config: Config; lease: FleetLease; redis: Redis; logger: Logger; rescuerId: string }) {
    this.#config = options.config;
    this.#lease = options.lease;
    this.#redis = options.redis;
    this.#logger = options.logger;
    this.#rescuerId = options.rescuerId;
  }

  start(): void {
    if (!this.#config.targets.some((t) => t.executor.type === 'vcsa-api')) return;
    const intervalMs = this.#config.quiesce.watchdogIntervalSeconds * 1000;
    const tick = (): void => {
      if (this.#stopped) return;
      this.#running = this.sweep()
        .catch((err: unknown) => this.#logger.warn({ err }, 'native watchdog sweep failed'))
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

  /** One pass; returns the targets whose slot it freed. */
  async sweep(): Promise<string[]> {
    const now = await this.#lease.redisNow();
    const freed: string[] = [];
    for (const entry of await this.#lease.holders()) {
      if (entry.expiresAt > now) continue;
      if (entry.rescuer && entry.rescuer !== this.#rescuerId && (entry.rescueUntil ?? 0) > now) continue;
      if (await this.#rescue(entry)) freed.push(entry.target);
    }
    return freed;
  }

  async #rescue(entry: LeaseEntry): Promise<boolean> {
    const log = this.#logger.child({ target: entry.target, step: 'native-watchdog', deadHolder: entry.holder, token: entry.token });
    if (!(await this.#lease.claimExpired(entry, this.#rescuerId, 120_000))) return false;
    const jobsKey = nativeJobsKey(this.#config.redis.prefix);
    const raw = await this.#redis.hget(jobsKey, entry.target);
    const record = raw ? (JSON.parse(raw) as NativeJobRecord) : null;
    const target = this.#config.targets.find((t) => t.name === entry.target);
    if (record && record.token === entry.token && target?.executor.type === 'vcsa-api') {
      const api = new ApplianceApi(target.executor, log);
      const signal = AbortSignal.timeout(60_000);
      try {
        // The slot is freed once the appliance reports the job ended: its job is the native window.
        const job = await cancelBackupJobAndWait(api, record.applianceJobId, signal);
        log.warn({ applianceJobId: record.applianceJobId, state: job.state, messages: quoteMessages(job.messages) }, 'native watchdog: the dead worker\'s appliance backup job is cancelled (or had ended); its received files are discarded');
      } catch (err) {
        // Freeing the slot anyway is safe: the appliance refuses a second job while one runs
        // (the retry then fails with NATIVE_APPLIANCE_BUSY and backs off).
        log.error({ err: errorMessage(err), applianceJobId: record.applianceJobId }, 'native watchdog: could not cancel the appliance job; freeing the slot anyway');
      } finally {
        await api.logout();
      }
    } else {
      log.warn('native watchdog: the dead worker had not started an appliance job; freeing its slot');
    }
    if (record && record.token === entry.token) await this.#redis.hdel(jobsKey, entry.target);
    return this.#lease.freeRescued(entry, this.#rescuerId);
  }
}
