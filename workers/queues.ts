import { Queue, type JobsOptions, type QueueOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../src/config/load.ts';

/**
 * Two queues. `backup` holds the real work, one job per appliance per run. `trigger` holds the
 * thin jobs that job schedulers produce; each just enqueues a backup job. (A scheduler's own
 * job is never failed for stalling while its scheduler exists, so a crashing backup must not
 * be one — notes/bullmq.md.)
 */
export const backupQueueName = 'backup';
export const triggerQueueName = 'trigger';

export function queueOptions(config: Config, connection: Redis): QueueOptions {
  return { connection, prefix: config.redis.prefix };
}

/** Job ids may not contain ':' nor be all digits. */
export function backupJobId(target: string, runId: string): string {
  return `backup.${target}.${runId}`;
}

export function schedulerId(target: string): string {
  return `nightly.${target}`;
}

export function backupJobOptions(config: Config, target: string, runId: string): JobsOptions {
  return {
    jobId: backupJobId(target, runId),
    attempts: config.worker.attempts,
    backoff: { type: 'exponential', delay: config.worker.backoffSeconds * 1000, jitter: 0.5 },
    // One backup per appliance in the queue at a time; a second request while one is pending
    // or running is dropped (and `run` says so).
    deduplication: { id: `target.${target}` },
    removeOnComplete: { age: 7 * 24 * 3600, count: 1000 },
    removeOnFail: { age: 30 * 24 * 3600, count: 1000 },
  };
}

/** Removes a fleet's queues and every other key under its prefix (the demo's and tests' cleanup). */
export async function removeFleetKeys(redis: Redis, prefix: string): Promise<void> {
  for (const name of [backupQueueName, triggerQueueName]) {
    const q = new Queue(name, { connection: redis, prefix });
    await q.obliterate({ force: true }).catch(() => undefined);
    await q.close();
  }
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}
