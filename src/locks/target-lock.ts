import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Config } from '../config/load.ts';
import { BackupError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { timings } from '../defaults.ts';

/**
 * One backup (or restore, or rekey) per appliance at a time (invariant 3): a Redis key per target, set with
 * NX and a TTL, renewed while held, released only by the token that set it.
 */
const renewScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const releaseScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

export interface TargetLock {
  readonly target: string;
  /**
   * Throws TARGET_LOCK_LOST unless this holder still has the lock. Called before a commit: a
   * worker paused (SIGSTOP, a VM freeze) past the lock's TTL may find that another worker has
   * taken the job over, and must not commit a second backup of the same run.
   */
  assertHeld(step: string): Promise<void>;
  release(): Promise<void>;
}

/**
 * One TTL for every holder (backup, restore, rekey): twice the fleet lease. Renewed every third
 * of it, so a live holder paused for up to a lease's length keeps it (longer, and its fleet lease
 * is lost too, which stops it at the next step anyway); a dead holder's lock is gone within two
 * leases, before a retried job of the same target has waited long for it (backup waits up to
 * twice this).
 */
export function targetLockTtlMs(config: Config): number {
  return config.quiesce.leaseSeconds * 2000;
}

export function targetLockKey(prefix: string, target: string): string {
  return `${prefix}:lock:target:${target}`;
}

/**
 * Takes the lock, waiting up to `waitMs` (default: not at all) for a holder to finish — or for
 * the lock of a worker that died to expire, which takes at most `ttlMs`.
 */
export async function acquireTargetLock(
  redis: Redis,
  options: { prefix: string; target: string; holder: string; ttlMs: number; logger: Logger; purpose: 'backup' | 'restore' | 'rekey'; waitMs?: number; signal?: AbortSignal },
): Promise<TargetLock> {
  const key = targetLockKey(options.prefix, options.target);
  const token = `${options.holder}|${options.purpose}|${randomUUID()}`;
  const deadline = Date.now() + (options.waitMs ?? 0);
  let ok = await redis.set(key, token, 'PX', options.ttlMs, 'NX');
  while (ok !== 'OK' && Date.now() < deadline) {
    options.signal?.throwIfAborted();
    await new Promise((resolve) => setTimeout(resolve, Math.min(timings.targetLockPollMs, Math.max(1, deadline - Date.now()))));
    ok = await redis.set(key, token, 'PX', options.ttlMs, 'NX');
  }
  if (ok !== 'OK') {
    const owner = (await redis.get(key)) ?? 'unknown';
    const [holder, purpose] = owner.split('|');
    throw new BackupError('TARGET_BUSY', `${options.target} is busy: a ${purpose ?? 'job'} by ${holder ?? 'another worker'} is running; try again when it has finished`);
  }
  const timer = setInterval(() => {
    redis.eval(renewScript, 1, key, token, options.ttlMs).catch((err: unknown) => options.logger.warn({ err, target: options.target }, 'target lock renewal failed'));
  }, Math.max(timings.minRenewMs, Math.floor(options.ttlMs * timings.renewFraction)));
  timer.unref();
  return {
    target: options.target,
    assertHeld: async (step) => {
      if ((await redis.get(key)) === token) return;
      throw new BackupError('TARGET_LOCK_LOST', `${options.target}: the appliance's lock expired before ${step} (this worker was paused or cut off from Redis longer than ${options.ttlMs} ms); another worker may have taken the job over, so this one stops without committing`);
    },
    release: async () => {
      clearInterval(timer);
      await redis.eval(releaseScript, 1, key, token);
    },
  };
}
