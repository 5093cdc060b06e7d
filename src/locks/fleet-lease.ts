import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import { BackupError } from '../errors.ts';
import type { Config } from '../config/load.ts';
import type { Logger } from '../log.ts';
import { timings } from '../defaults.ts';

/**
 * The fleet quiesce lease: at most `maxConcurrent` appliances have services stopped at any
 * instant, across every worker process and host.
 *
 * Why not BullMQ's global concurrency: it frees a dead worker's slot as soon as the stalled job
 * goes back to wait, while that worker's appliance may still be quiesced. Here a slot is an
 * entry in one Redis hash, `<prefix>:lease:holders`, field = target. An entry whose lease has
 * expired STILL occupies its slot: only the watchdog frees it, after it has started that
 * appliance's services and confirmed them (invariant 2). Every entry carries a fence token from
 * INCR; renewals, checks and releases compare it in Lua, and expiry uses Redis's clock (TIME),
 * never a worker's.
 *
 * Failover (Redis Sentinel): replication is asynchronous, so a new primary may lack the old one's
 * last writes. With `replicas` > 0 an acquisition counts only once that many replicas have it
 * (WAIT): until then nothing is stopped, and one that is not acknowledged in time is withdrawn.
 * A renewal likewise extends the holder's own idea of its lease only once acknowledged: the
 * holder measures its lease on its own monotonic clock from when it sent the last acknowledged
 * write, less a margin for clock differences between Redis hosts, so it stops trusting the lease
 * before a promoted replica (whose copy may be one renewal behind) shows it expired — and before
 * a watchdog there could start the appliance and free the slot. Releases, abandons and the
 * watchdog's own writes need no WAIT: losing one leaves a slot taken longer, never freed early.
 */
export interface LeaseEntry {
  readonly target: string;
  readonly token: number;
  /** Worker that holds it: "host:pid:uuid". */
  readonly holder: string;
  readonly since: number;
  readonly expiresAt: number;
  /** Set while a watchdog is restarting the appliance: who, and until when its claim holds. */
  readonly rescuer?: string;
  readonly rescueUntil?: number;
  /**
   * Why the holder left its slot to the watchdog instead of freeing it (services not confirmed
   * running): status and the dashboard show it.
   */
  readonly abandoned?: { readonly at: number; readonly reason: string };
  /** Watchdog attempts that could not confirm the services, the last one's error, and when to try next. */
  readonly rescueFailures?: number;
  readonly lastRescueError?: string;
  readonly nextRescueAt?: number;
}

/**
 * Checked before each step that touches a quiesced appliance: throws LEASE_LOST once the fenced
 * lease is no longer held (a watchdog may be restarting the appliance).
 */
export interface LeaseGuard {
  /** `step` names what was about to run, for the error message ("dump", "restore vcdb"). */
  assertHeld(step: string): Promise<void>;
}

const nowMs = `local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

// KEYS[1] holders hash, KEYS[2] fence counter. ARGV: target, holder, leaseMs, max.
// Returns the fence token, 0 when the fleet is full, -1 when the target already has an entry.
const acquireScript = `${nowMs}
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return -1 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({target = ARGV[1], token = token, holder = ARGV[2], since = now, expiresAt = now + tonumber(ARGV[3])}))
return token`;

// ARGV: target, token, leaseMs. Returns 1 if renewed, 0 if the lease is lost (gone, other token, expired).
const renewScript = `${nowMs}
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local e = cjson.decode(raw)
if e.token ~= tonumber(ARGV[2]) or e.expiresAt <= now or e.rescuer then return 0 end
e.expiresAt = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(e))
return 1`;

// ARGV: target, token. 1 while held and unexpired.
const checkScript = `${nowMs}
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local e = cjson.decode(raw)
if e.token ~= tonumber(ARGV[2]) or e.expiresAt <= now or e.rescuer then return 0 end
return 1`;

// ARGV: target, token, wake. Frees the slot only for the same fence token, and only if no watchdog
// has claimed it (the watchdog then frees it once its own restart is confirmed). wake '1' tells
// the waiters; an acquisition withdrawn because no replica acknowledged it passes '0' (they
// would only find the same missing replica).
const releaseScript = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local e = cjson.decode(raw)
if e.token ~= tonumber(ARGV[2]) or e.rescuer then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[3] == '1' then redis.call('PUBLISH', KEYS[3], ARGV[1]) end
return 1`;

// ARGV: target, token, reason. Marks an entry its holder abandoned with why, and lets it expire
// now: the holder has given up, so the watchdog need not wait out the rest of the lease.
const abandonScript = `${nowMs}
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local e = cjson.decode(raw)
if e.token ~= tonumber(ARGV[2]) then return 0 end
e.abandoned = { at = now, reason = ARGV[3] }
if e.expiresAt > now then e.expiresAt = now end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(e))
return 1`;

// ARGV: target, token, rescuer, claimMs. Claims an expired entry (or one whose rescuer's claim
// expired) for a watchdog. Returns 1 when claimed.
const claimScript = `${nowMs}
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local e = cjson.decode(raw)
if e.token ~= tonumber(ARGV[2]) or e.expiresAt > now then return 0 end
if e.rescuer and e.rescueUntil > now and e.rescuer ~= ARGV[3] then return 0 end
if e.nextRescueAt and e.nextRescueAt > now then return 0 end
e.rescuer = ARGV[3]
e.rescueUntil = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(e))
return 1`;

// ARGV: target, token, rescuer, error, baseMs, capMs. A rescue that could not confirm the
// services: drop the claim (any watchdog may try next), count the failure and back off,
// doubling from baseMs up to capMs. Returns the failure count, 0 if the entry is not ours.
const rescueFailedScript = `${nowMs}
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local e = cjson.decode(raw)
if e.token ~= tonumber(ARGV[2]) or e.rescuer ~= ARGV[3] then return 0 end
e.rescuer = nil
e.rescueUntil = nil
e.rescueFailures = (e.rescueFailures or 0) + 1
e.lastRescueError = ARGV[4]
e.nextRescueAt = now + math.min(tonumber(ARGV[5]) * 2 ^ (e.rescueFailures - 1), tonumber(ARGV[6]))
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(e))
return e.rescueFailures`;

// ARGV: target, token. An operator's forced release (they checked the appliance): frees the entry
// they were shown, whatever its state, but not one taken since. Returns the freed entry, or nil.
const forceReleaseScript = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return nil end
if cjson.decode(raw).token ~= tonumber(ARGV[2]) then return nil end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[3], ARGV[1])
return raw`;

// ARGV: target, token, rescuer. Frees a slot the watchdog has made safe.
const freeRescuedScript = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local e = cjson.decode(raw)
if e.token ~= tonumber(ARGV[2]) or e.rescuer ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[3], ARGV[1])
return 1`;

export interface FleetLeaseOptions {
  /** Redis key prefix (config.redis.prefix). */
  readonly prefix: string;
  readonly maxConcurrent: number;
  readonly leaseMs: number;
  /** Identifies this process in the lease table and the dashboard. */
  readonly holderId?: string;
  readonly logger: Logger;
  /**
   * Replicas that must acknowledge an acquisition or renewal (WAIT) before it counts: 0 (the
   * default) for a Redis without failover.
   */
  readonly replicas?: number;
}

export interface LeaseHandle {
  readonly target: string;
  readonly token: number;
  /** Throws LEASE_LOST once the lease is no longer held (expired, or taken over by a watchdog). */
  readonly guard: LeaseGuard;
  /** Frees the slot. Call only once the appliance's services are confirmed running, or nothing was stopped. */
  release(): Promise<void>;
  /**
   * Stops renewing without freeing the slot: for when the services could not be confirmed
   * running. The lease expires and the watchdog restarts the appliance, then frees the slot.
   * `reason` is recorded in the entry (best effort) for status and the dashboard.
   */
  abandon(reason: string): Promise<void>;
  /** True once a renewal failed, or the lease was not renewed (acknowledged) in time. */
  lost(): boolean;
  /**
   * Until when (epoch ms, this process's clock) the holder counts on the lease: its last
   * acknowledged write's send time plus the lease, less the clock margin. Redis's copy, on the
   * primary or on a replica that acknowledged it, expires no earlier.
   */
  heldUntil(): number;
}

export function holderIdentity(host: string): string {
  return `${host}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

/**
 * The fleet lease as the config describes it: every process (worker, restore, status, the
 * dashboard) builds it here, so they all agree on the keys, the limit and the lease length.
 */
export function fleetLeaseFor(config: Config, redis: Redis, options: { logger: Logger; holderId?: string }): FleetLease {
  return new FleetLease(redis, {
    prefix: config.redis.prefix,
    maxConcurrent: config.quiesce.maxConcurrent,
    leaseMs: config.quiesce.leaseSeconds * 1000,
    replicas: leaseReplicas(config),
    logger: options.logger,
    ...(options.holderId !== undefined ? { holderId: options.holderId } : {}),
  });
}

/** redis.leaseReplicas, or its default: 1 with Sentinel (there is a replica to fail over to), else 0. */
export function leaseReplicas(config: Pick<Config, 'redis'>): number {
  return config.redis.leaseReplicas ?? (config.redis.sentinels ? 1 : 0);
}

/** How long a lease write waits for its replicas: well inside one renewal period. */
export function replicaWaitMs(leaseMs: number): number {
  return Math.max(timings.leaseReplicaWaitMinMs, Math.min(timings.leaseReplicaWaitMaxMs, Math.floor(leaseMs / 6)));
}

/** Taken off the holder's idea of its lease: Redis hosts' clocks may differ by this much. */
export function leaseClockMarginMs(leaseMs: number): number {
  return Math.min(timings.leaseClockMarginMs, Math.floor(leaseMs / 10));
}

export class FleetLease {
  readonly holderId: string;
  readonly #redis: Redis;
  readonly #options: FleetLeaseOptions;
  readonly #holdersKey: string;
  readonly #fenceKey: string;
  readonly #channel: string;
  /** Set when the last acquisition was withdrawn for want of a replica's acknowledgement: for LEASE_TIMEOUT's message. */
  #unreplicated = false;

  constructor(redis: Redis, options: FleetLeaseOptions) {
    this.#redis = redis;
    this.#options = options;
    this.holderId = options.holderId ?? holderIdentity('local');
    this.#holdersKey = `${options.prefix}:lease:holders`;
    this.#fenceKey = `${options.prefix}:lease:fence`;
    this.#channel = `${options.prefix}:lease:released`;
  }

  get channel(): string {
    return this.#channel;
  }

  async #eval(script: string, ...args: (string | number)[]): Promise<number> {
    const result = await this.#redis.eval(script, 3, this.#holdersKey, this.#fenceKey, this.#channel, ...args);
    return Number(result);
  }

  /**
   * WAIT for `replicas` replicas to have this connection's writes so far; true at once without
   * replicas. A lost connection counts as not acknowledged.
   */
  async #replicated(): Promise<boolean> {
    const replicas = this.#options.replicas ?? 0;
    if (replicas === 0) return true;
    const acked = await this.#redis.wait(replicas, replicaWaitMs(this.#options.leaseMs)).catch(() => -1);
    return acked >= replicas;
  }

  /** One attempt: a handle, or null when the fleet is full (or no replica acknowledged the slot). */
  async tryAcquire(target: string): Promise<LeaseHandle | null> {
    const sentAt = performance.now();
    const token = await this.#eval(acquireScript, target, this.holderId, this.#options.leaseMs, this.#options.maxConcurrent);
    if (token === 0) return null;
    if (token === -1) {
      // An entry for this target already exists: a previous holder's lease that the watchdog has
      // not yet made safe, or another worker backing it up. Either way, not ours to take.
      return null;
    }
    if (!(await this.#replicated())) {
      // A failover now could lose this entry and give the slot to another appliance while this
      // one is stopped: withdraw it, stop nothing, and try again later.
      this.#unreplicated = true;
      await this.#eval(releaseScript, target, token, '0').catch(() => undefined);
      this.#options.logger.warn(
        { target, token, replicas: this.#options.replicas, waitMs: replicaWaitMs(this.#options.leaseMs) },
        'fleet lease not acknowledged by enough Redis replicas (redis.leaseReplicas); withdrawn, nothing stopped; retrying',
      );
      return null;
    }
    this.#unreplicated = false;
    return this.#handle(target, token, sentAt);
  }

  /**
   * Waits for a slot: polls, and wakes early when a slot is released. Gives up after `waitMs`
   * with a retryable LEASE_TIMEOUT (the job goes back to the queue with backoff).
   */
  async acquire(target: string, options: { waitMs: number; signal?: AbortSignal; pollMs?: number; onWaiting?: (holders: LeaseEntry[]) => void }): Promise<LeaseHandle> {
    const deadline = Date.now() + options.waitMs;
    const pollMs = options.pollMs ?? timings.leaseAcquirePollMs;
    let reported = false;
    // One subscription to release messages for the whole wait, opened only if we have to wait.
    let releases: ReleaseListener | undefined;
    try {
      for (;;) {
        options.signal?.throwIfAborted();
        const handle = await this.tryAcquire(target);
        if (handle) return handle;
        if (!reported && options.onWaiting) {
          reported = true;
          options.onWaiting(await this.holders());
        }
        if (Date.now() >= deadline) {
          const why = this.#unreplicated
            ? `no ${this.#options.replicas} Redis replica(s) acknowledged the slot (redis.leaseReplicas); check the replicas (INFO replication), or set redis.leaseReplicas: 0 to accept that a failover may lose it`
            : `quiesce.maxConcurrent is ${this.#options.maxConcurrent}`;
          throw new BackupError('LEASE_TIMEOUT', `waited ${Math.round(options.waitMs / 1000)} s for a fleet quiesce slot (${why}); will retry later`);
        }
        if (!releases) {
          // Subscribe, then look again before waiting: a release published before the
          // subscription was active would otherwise be missed until the next poll.
          releases = new ReleaseListener(this.#redis, this.#channel);
          await releases.ready;
          continue;
        }
        await releases.next(Math.min(pollMs, Math.max(0, deadline - Date.now())), options.signal);
      }
    } finally {
      releases?.close();
    }
  }

  #handle(target: string, token: number, sentAt: number): LeaseHandle {
    const { leaseMs, logger } = this.#options;
    const margin = leaseClockMarginMs(leaseMs);
    let lost = false;
    let released = false;
    // On this process's monotonic clock: until when the lease is surely held, from when the last
    // acknowledged acquisition or renewal was sent (Redis's copy expires no earlier).
    let heldUntil = sentAt + leaseMs - margin;
    const lapsed = (): boolean => {
      if (!lost && performance.now() >= heldUntil) {
        lost = true;
        logger.error({ target, token }, 'fleet lease not renewed (acknowledged) in time: stopping at the next step; the watchdog restarts the appliance');
      }
      return lost;
    };
    const renew = async (): Promise<void> => {
      if (released || lapsed()) return;
      const at = performance.now();
      try {
        const ok = await this.#eval(renewScript, target, token, leaseMs);
        if (ok !== 1) {
          lost = true;
          logger.error({ target, token }, 'fleet lease lost: stopping at the next step; the watchdog restarts the appliance');
        } else if (await this.#replicated()) {
          heldUntil = at + leaseMs - margin;
        } else {
          logger.warn({ target, token, replicas: this.#options.replicas }, 'fleet lease renewal not acknowledged by enough Redis replicas; it counts only once one is');
        }
      } catch (err) {
        // Redis unreachable: keep trying; the lease lapses on its own if this goes on.
        logger.warn({ err, target }, 'fleet lease renewal failed; retrying');
      }
    };
    const timer = setInterval(() => void renew(), Math.max(timings.minRenewMs, Math.floor(leaseMs * timings.renewFraction)));
    timer.unref();
    const guard: LeaseGuard = {
      assertHeld: async (step: string) => {
        if (!lapsed()) {
          const ok = await this.#eval(checkScript, target, token).catch(() => 0);
          if (ok === 1) return;
          lost = true;
        }
        throw new BackupError('LEASE_LOST', `the fleet quiesce lease for ${target} was lost before the ${step} step (worker paused, cut off from Redis, or a Redis failover); stopping, the appliance's services are started again`);
      },
    };
    return {
      target,
      token,
      guard,
      lost: () => (released ? lost : lapsed()),
      heldUntil: () => Math.round(Date.now() + heldUntil - performance.now()),
      abandon: async (reason: string) => {
        released = true;
        clearInterval(timer);
        await this.#eval(abandonScript, target, token, reason).catch((err: unknown) => logger.warn({ err }, 'could not record why the fleet slot was left to the watchdog'));
      },
      release: async () => {
        released = true;
        clearInterval(timer);
        await this.#eval(releaseScript, target, token, '1');
      },
    };
  }

  async holders(): Promise<LeaseEntry[]> {
    const all = await this.#redis.hgetall(this.#holdersKey);
    return Object.values(all).map((raw) => JSON.parse(raw) as LeaseEntry);
  }

  /** Claims an expired entry for restarting its appliance. */
  async claimExpired(entry: LeaseEntry, rescuer: string, claimMs: number): Promise<boolean> {
    return (await this.#eval(claimScript, entry.target, entry.token, rescuer, claimMs)) === 1;
  }

  /** Records a rescue that could not confirm the services; returns the failure count (0: not ours). */
  async rescueFailed(entry: LeaseEntry, rescuer: string, error: string, backoff: { baseMs: number; capMs: number }): Promise<number> {
    return this.#eval(rescueFailedScript, entry.target, entry.token, rescuer, error.slice(0, 500), backoff.baseMs, backoff.capMs);
  }

  /**
   * Frees the target's slot whatever its state: for an operator who has checked the appliance
   * (`lease release --force`). Only the entry with this fence token: not one taken since the
   * operator looked. Returns the entry it freed, or null.
   */
  async forceRelease(entry: LeaseEntry): Promise<LeaseEntry | null> {
    const raw = await this.#redis.eval(forceReleaseScript, 3, this.#holdersKey, this.#fenceKey, this.#channel, entry.target, entry.token);
    return typeof raw === 'string' ? (JSON.parse(raw) as LeaseEntry) : null;
  }

  async freeRescued(entry: LeaseEntry, rescuer: string): Promise<boolean> {
    return (await this.#eval(freeRescuedScript, entry.target, entry.token, rescuer)) === 1;
  }

  /** Redis's clock, which lease expiry uses. */
  async redisNow(): Promise<number> {
    const [s, us] = await this.#redis.time();
    return Number(s) * 1000 + Math.floor(Number(us) / 1000);
  }
}

/** Wakes a waiter when any slot is released (PUBLISH from the release scripts), or after a poll interval. */
class ReleaseListener {
  readonly #sub: Redis;
  /** Settles once the subscription is active (or failed: then polling alone does the job). */
  readonly ready: Promise<void>;
  #wake: (() => void) | undefined;
  /** A release seen while nobody waited (between a check and the next wait): don't sleep through it. */
  #missed = false;

  constructor(redis: Redis, channel: string) {
    this.#sub = redis.duplicate({ maxRetriesPerRequest: null });
    this.#sub.on('error', () => undefined);
    this.#sub.on('message', () => {
      if (this.#wake) this.#wake();
      else this.#missed = true;
    });
    this.ready = this.#sub.subscribe(channel).then(
      () => undefined,
      () => undefined,
    );
  }

  next(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.#missed) {
      this.#missed = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }

  close(): void {
    this.#wake?.();
    this.#sub.disconnect();
  }
}
