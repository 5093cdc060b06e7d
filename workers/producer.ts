import { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../src/config/load.ts';
import type { BackupJobData, BackupJobResult } from '../src/fleet/backup-job.ts';
import { backupJobOptions, backupQueueName, queueOptions, schedulerId, triggerQueueName } from './queues.ts';
import { decodeFailure } from './job-failure.ts';

export interface ScheduleEntry {
  readonly target: string;
  readonly cron: string;
  readonly tz: string;
  readonly next: number | null;
}

/**
 * Makes the job schedulers match the config: one per enabled target (its own schedule or the
 * fleet's), and none for targets that were removed or disabled.
 */
export async function syncSchedules(config: Config, connection: Redis): Promise<{ upserted: ScheduleEntry[]; removed: string[] }> {
  const queue = new Queue(triggerQueueName, queueOptions(config, connection));
  try {
    const wanted = new Map(config.targets.filter((t) => t.enabled).map((t) => [schedulerId(t.name), t]));
    const upserted: ScheduleEntry[] = [];
    for (const [id, target] of wanted) {
      const schedule = target.schedule ?? config.schedule;
      await queue.upsertJobScheduler(id, { pattern: schedule.cron, tz: schedule.tz }, { name: 'trigger', data: { target: target.name } });
    }
    const removed: string[] = [];
    for (const s of await queue.getJobSchedulers(0, -1)) {
      const id = s.key;
      if (id.startsWith('nightly.') && !wanted.has(id)) {
        await queue.removeJobScheduler(id);
        removed.push(id.slice('nightly.'.length));
      }
    }
    for (const s of await queue.getJobSchedulers(0, -1)) {
      const target = wanted.get(s.key);
      if (target) {
        const schedule = target.schedule ?? config.schedule;
        upserted.push({ target: target.name, cron: schedule.cron, tz: schedule.tz, next: s.next ?? null });
      }
    }
    return { upserted, removed };
  } finally {
    await queue.close();
  }
}

/** Next scheduled run per target, from the schedulers in Redis. */
export async function nextRuns(config: Config, connection: Redis): Promise<Map<string, number>> {
  const queue = new Queue(triggerQueueName, queueOptions(config, connection));
  try {
    return await schedulerNextRuns(queue);
  } finally {
    await queue.close();
  }
}

/** Next scheduled run per target (epoch ms), read from an open trigger queue. */
export async function schedulerNextRuns(triggerQueue: Queue): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const s of await triggerQueue.getJobSchedulers(0, -1)) {
    if (s.key.startsWith('nightly.') && s.next) out.set(s.key.slice('nightly.'.length), s.next);
  }
  return out;
}

export interface Enqueued {
  readonly target: string;
  readonly jobId: string;
  /** A backup of this appliance was already queued or running: we follow that one instead. */
  readonly alreadyQueued: boolean;
}

export async function enqueueBackups(config: Config, connection: Redis, targets: readonly string[], runId: string): Promise<Enqueued[]> {
  const queue = new Queue<BackupJobData>(backupQueueName, queueOptions(config, connection));
  try {
    const out: Enqueued[] = [];
    for (const target of targets) {
      const opts = backupJobOptions(config, target, runId);
      await queue.add('backup', { target, runId, trigger: 'run' }, opts);
      const holder = await queue.getDeduplicationJobId(`target.${target}`);
      const jobId = holder ?? opts.jobId ?? '';
      out.push({ target, jobId, alreadyQueued: jobId !== opts.jobId });
    }
    return out;
  } finally {
    await queue.close();
  }
}

export type JobOutcome =
  | { readonly target: string; readonly ok: true; readonly result: BackupJobResult }
  | { readonly target: string; readonly ok: false; readonly code: string; readonly message: string };

/**
 * Follows jobs to their end (completed, or failed after its last attempt). Polls job state
 * through the caller's connection only: simple, and robust to Redis restarts and failovers (a
 * command waits in the connection's queue until Redis is back), which a missed QueueEvents
 * message or a blocking read on a second connection is not.
 */
export async function waitForJobs(
  config: Config,
  connection: Redis,
  jobs: readonly Enqueued[],
  options: { signal?: AbortSignal; pollMs?: number; onProgress?: (target: string, progress: unknown, state: string) => void } = {},
): Promise<JobOutcome[]> {
  const queue = new Queue<BackupJobData, BackupJobResult>(backupQueueName, queueOptions(config, connection));
  const pending = new Map(jobs.map((j) => [j.jobId, j]));
  const outcomes: JobOutcome[] = [];
  try {
    while (pending.size > 0) {
      options.signal?.throwIfAborted();
      for (const [jobId, entry] of [...pending]) {
        // State first, then the job: a job read after it finished carries its result or reason.
        const state = await queue.getJobState(jobId);
        const job = await Job.fromId<BackupJobData, BackupJobResult>(queue, jobId);
        if (!job) {
          outcomes.push({ target: entry.target, ok: false, code: 'JOB_MISSING', message: `job ${jobId} is no longer in Redis (removed, or Redis lost its data)` });
          pending.delete(jobId);
          continue;
        }
        options.onProgress?.(entry.target, job.progress, state);
        if (state === 'completed') {
          outcomes.push({ target: entry.target, ok: true, result: job.returnvalue });
          pending.delete(jobId);
        } else if (state === 'failed') {
          outcomes.push({ target: entry.target, ok: false, ...decodeFailure(job.failedReason) });
          pending.delete(jobId);
        }
      }
      if (pending.size === 0) break;
      await sleepUnlessAborted(options.pollMs ?? 1000, options.signal);
    }
    return outcomes;
  } finally {
    await queue.close();
  }
}

function sleepUnlessAborted(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
