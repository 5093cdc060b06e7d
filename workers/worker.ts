import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Config, TargetConfig } from '../src/config/load.ts';
import { BackupError, isPermanent } from '../src/errors.ts';
import type { Executor } from '../src/executors/executor.ts';
import type { Logger } from '../src/log.ts';
import type { ObjectStore } from '../src/storage/object-store.ts';
import { spoolHost } from '../src/backup/spool.ts';
import { processBackupJob, type BackupJobData, type BackupJobDeps, type BackupJobResult, type JobHandle } from '../src/fleet/backup-job.ts';
import { fleetLeaseFor, holderIdentity } from '../src/locks/fleet-lease.ts';
import { Watchdog } from '../src/locks/watchdog.ts';
import { createNativeLease, isNativeTarget, processNativeJob, type NativeJobDeps } from '../src/native/native-job.ts';
import { NativeWatchdog } from '../src/native/native-watchdog.ts';
import { createNotifier } from '../src/notify/notifier.ts';
import { FleetState } from '../src/state/fleet-state.ts';
import { encodeFailure } from './job-failure.ts';
import { backupJobOptions, backupQueueName, queueOptions, triggerQueueName } from './queues.ts';
import { connectRedis } from '../src/redis/connection.ts';

export interface WorkerDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly store: ObjectStore;
  readonly makeExecutor: (target: TargetConfig) => Executor;
  readonly afterBackup?: BackupJobDeps['afterBackup'];
}

export interface RunningWorker {
  readonly holderId: string;
  /** Graceful: cancels dumps in flight (their services are started again), waits for jobs to settle. */
  close(): Promise<void>;
}

/**
 * A worker process: consumes backup jobs and scheduler triggers, and runs the watchdog. Thin:
 * the work is `processBackupJob` in src/fleet; this file adapts BullMQ to it.
 */
export function startWorker(deps: WorkerDeps): RunningWorker {
  const { config, logger } = deps;
  const connection = connectRedis(config.redis, 'service', { onError: (err) => logger.warn({ err: err.message }, 'redis connection error; reconnecting') });
  const holderId = holderIdentity(spoolHost());
  const lease = fleetLeaseFor(config, connection, { holderId, logger });
  const state = new FleetState(connection, config.redis.prefix);
  // notify.webhook: failure/recovery from each job, stale alerts from a timer (deduplicated in Redis).
  const notifier = createNotifier(config, connection, logger);
  const shutdown = new AbortController();
  const jobControllers = new Map<string, AbortController>();
  /** Jobs running in this process: close() waits for them (each starts its appliance's services again). */
  const inFlight = new Set<Promise<unknown>>();
  const jobDeps: BackupJobDeps = {
    config,
    redis: connection,
    lease,
    state,
    store: deps.store,
    makeExecutor: deps.makeExecutor,
    logger,
    ...(deps.afterBackup ? { afterBackup: deps.afterBackup } : {}),
    ...(notifier ? { notifier } : {}),
  };

  // vcsa-native targets: the appliance's own backup, with a lease pool of its own (native.maxConcurrent).
  const nativeLease = createNativeLease(connection, config, holderId, logger);
  const { lease: _classicLease, makeExecutor: _makeExecutor, ...sharedDeps } = jobDeps;
  const nativeDeps: NativeJobDeps = { ...sharedDeps, nativeLease };
  const isNative = (name: string): boolean => config.targets.some((t) => t.name === name && isNativeTarget(t));

  const backupWorker = new Worker<BackupJobData, BackupJobResult>(
    backupQueueName,
    (job: Job<BackupJobData, BackupJobResult>, token?: string, bullSignal?: AbortSignal) => {
      const run = processJob(job, token, bullSignal);
      inFlight.add(run);
      return run.finally(() => inFlight.delete(run));
    },
    {
      ...queueOptions(config, connection),
      concurrency: config.worker.concurrency,
      lockDuration: config.worker.lockSeconds * 1000,
      stalledInterval: config.worker.stalledIntervalSeconds * 1000,
      // A killed worker's job is retried, not failed, up to the configured attempts.
      maxStalledCount: config.worker.attempts,
      name: holderId,
    },
  );
  async function processJob(job: Job<BackupJobData, BackupJobResult>, token?: string, bullSignal?: AbortSignal): Promise<BackupJobResult> {
    const controller = new AbortController();
    jobControllers.set(job.id ?? '', controller);
    const signal = AbortSignal.any([controller.signal, shutdown.signal, ...(bullSignal ? [bullSignal] : [])]);
    try {
      const handle: JobHandle = {
        id: job.id ?? '',
        data: job.data,
        attempt: job.attemptsMade + 1,
        maxAttempts: job.opts.attempts ?? 1,
        updateData: (data) => job.updateData(data),
        reportProgress: (event) => void job.updateProgress({ ...event }).catch(() => undefined),
        // extendLock succeeds only with this worker's token: a stalled job handed to another fails it.
        assertOwned: async (step) => {
          if (token === undefined) return;
          if ((await job.extendLock(token, config.worker.lockSeconds * 1000)) !== 1) {
            throw new BackupError('JOB_LOCK_LOST', `job ${job.id ?? ''} was handed to another worker before ${step} (this one was paused or cut off from Redis past worker.lockSeconds); stopping without committing`);
          }
        },
      };
      if (isNative(job.data.target)) return await processNativeJob(nativeDeps, handle, signal);
      return await processBackupJob(jobDeps, handle, signal);
    } catch (err) {
      if (isPermanent(err)) throw new UnrecoverableError(encodeFailure(err));
      throw new Error(encodeFailure(err));
    } finally {
      jobControllers.delete(job.id ?? '');
    }
  }
  backupWorker.on('lockRenewalFailed', (jobIds) => {
    for (const id of jobIds) {
      logger.error({ jobId: id }, 'lost the job lock; cancelling the job here (another worker may take it over)');
      jobControllers.get(id)?.abort(new BackupError('JOB_LOCK_LOST', 'the queue lock of this job was lost'));
    }
  });
  backupWorker.on('error', (err) => logger.warn({ err: err.message }, 'backup worker error'));

  const backupQueue = new Queue<BackupJobData>(backupQueueName, queueOptions(config, connection));
  // Without a listener BullMQ prints every connection error with its stack on stderr.
  backupQueue.on('error', (err) => logger.debug({ err: err.message }, 'backup queue error'));
  const triggerWorker = new Worker<{ target: string }>(
    triggerQueueName,
    async (job) => {
      const runId = `s${Date.now()}`;
      await backupQueue.add('backup', { target: job.data.target, runId, trigger: 'schedule' }, backupJobOptions(config, job.data.target, runId));
      logger.info({ target: job.data.target, runId }, 'scheduled backup enqueued');
    },
    { ...queueOptions(config, connection), concurrency: 4, name: holderId },
  );
  triggerWorker.on('error', (err) => logger.warn({ err: err.message }, 'trigger worker error'));

  const watchdog = new Watchdog({ config, lease, makeExecutor: deps.makeExecutor, logger: logger.child({ component: 'watchdog' }), rescuerId: holderId, notifier });
  watchdog.start();
  const nativeWatchdog = new NativeWatchdog({ config, lease: nativeLease, redis: connection, logger: logger.child({ component: 'native-watchdog' }), rescuerId: holderId });
  nativeWatchdog.start();
  // Timers last, once nothing above can throw: close() is what stops them.
  const staleChecks = notifier?.startStaleChecks(config.targets.filter((t) => t.enabled).map((t) => t.name), config.notify.checkIntervalSeconds * 1000);
  logger.info({ holderId, concurrency: config.worker.concurrency, targets: config.targets.length }, 'worker started');

  let closing: Promise<void> | undefined;
  return {
    holderId,
    close: () => {
      closing ??= (async () => {
        logger.info('worker stopping: cancelling dumps in flight, starting services, releasing leases');
        shutdown.abort(new BackupError('ABORTED', 'worker shutting down'));
        // Jobs in flight first: cancelled, each starts its appliance's services again and settles.
        await Promise.allSettled([...inFlight]);
        // Then the rest, which only talks to Redis. While Redis does not answer, every command
        // waits for it forever (BullMQ's close, a watchdog sweep, the stale check): end the
        // connection first, so that they fail at once and SIGTERM ends the process.
        const redisUp = connection.status === 'ready';
        if (!redisUp) connection.disconnect();
        await Promise.allSettled([backupWorker.close(!redisUp), triggerWorker.close(!redisUp)]);
        await watchdog.stop();
        await nativeWatchdog.stop();
        await staleChecks?.stop();
        await backupQueue.close().catch(() => undefined);
        if (redisUp) await connection.quit().catch(() => connection.disconnect());
        logger.info('worker stopped');
      })();
      return closing;
    },
  };
}
