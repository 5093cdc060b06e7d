import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { findTarget, type Config, type TargetConfig } from '../config/load.ts';
import { hasCode } from '../error-codes.ts';
import { BackupError, errorCode, errorMessage, isPermanent } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { backupIdFor } from '../backup/manifest.ts';
import type { ProgressListener } from '../backup/progress.ts';
import { readSpoolRecord, removeSupersededSpools, spoolHost, type SpoolRecord } from '../backup/spool.ts';
import { uploadSpool, type UploadResult } from '../backup/upload-step.ts';
import { committedBackup } from '../catalog/committed-backup.ts';
import { throttledProgress, type BackupJobDeps, type BackupJobResult, type JobHandle } from '../fleet/backup-job.ts';
import { FleetLease, leaseReplicas } from '../locks/fleet-lease.ts';
import { acquireTargetLock } from '../locks/target-lock.ts';
import { noLeaseGuard, takeApplianceBackup } from './appliance-backup.ts';

/**
 * A queued backup of a vcsa-native target. The same rules as a dump (src/fleet/backup-job.ts):
 * the target lock (one backup per appliance), a fleet lease — from a pool of its own,
 * `native.maxConcurrent`, since no service stops but appliances and receivers carry load —
 * held while the appliance's job runs, the received files spooled once and the upload alone
 * retried from the spool, the manifest last. While the appliance's job runs its id is recorded
 * in Redis (`<prefix>:native:jobs`), so that the native watchdog can cancel it if this worker dies.
 */
export interface NativeJobDeps extends Omit<BackupJobDeps, 'lease' | 'makeExecutor'> {
  readonly nativeLease: FleetLease;
}

/** The lease pool of native jobs: the same lease machinery under `<prefix>:native`. */
export function createNativeLease(redis: Redis, config: Config, holderId: string, logger: Logger): FleetLease {
  return new FleetLease(redis, {
    prefix: nativeLeasePrefix(config.redis.prefix),
    maxConcurrent: config.native.maxConcurrent,
    leaseMs: config.native.leaseSeconds * 1000,
    replicas: leaseReplicas(config),
    holderId,
    logger: logger.child({ pool: 'native' }),
  });
}

export function nativeLeasePrefix(prefix: string): string {
  return `${prefix}:native`;
}

export function nativeJobsKey(prefix: string): string {
  return `${prefix}:native:jobs`;
}

export interface NativeJobRecord {
  readonly applianceJobId: string;
  readonly holder: string;
  readonly token: number;
  readonly at: string;
}

export function isNativeTarget(target: TargetConfig): boolean {
  return target.executor.type === 'vcsa-api';
}

export async function processNativeJob(deps: NativeJobDeps, job: JobHandle, signal: AbortSignal): Promise<BackupJobResult> {
  const { config, redis, nativeLease: lease, state } = deps;
  const target = findTarget(config, job.data.target);
  const logger = deps.logger.child({ jobId: job.id, target: target.name, attempt: job.attempt, profile: target.profile });
  const progress = throttledProgress(deps.state, target.name, lease.holderId, job);
  const lock = await acquireTargetLock(redis, {
    prefix: config.redis.prefix,
    target: target.name,
    holder: lease.holderId,
    ttlMs: Math.max(4000, config.native.leaseSeconds * 2000),
    logger,
    purpose: 'backup',
    waitMs: Math.max(10_000, config.native.leaseSeconds * 4000),
    signal,
  });
  try {
    let spool: SpoolRecord | undefined;
    let committedEarlier: UploadResult | null = null;
    if (job.data.spool && job.data.spool.host === spoolHost()) {
      spool = await readSpoolRecord(job.data.spool.dir).catch((err: unknown) => {
        logger.warn({ reason: errorMessage(err) }, 'spool not found');
        return undefined;
      });
      if (spool) logger.info({ backupId: spool.id }, 'uploading from the spool of an earlier attempt; not asking the appliance again');
    } else if (job.data.spool) {
      logger.warn({ spoolHost: job.data.spool.host }, 'the spool is on another host');
    }
    // As for a dump: no spool, perhaps because an earlier attempt committed and died before the
    // queue heard of it (S3 unable to say fails this attempt rather than guess).
    if (job.data.spool && !spool) committedEarlier = await committedBackup(deps.store, config.s3.prefix, target.name, job.data.spool.id, logger);
    if (job.data.spool && !spool && !committedEarlier) logger.warn('asking the appliance for a new backup');
    // As for a dump (src/fleet/backup-job.ts): a worker paused past its locks must not commit beside the one that took over.
    const ownsTheRun = async (): Promise<void> => {
      await lock.assertHeld('the manifest');
      await job.assertOwned?.('the manifest');
    };
    let outcome: { result: UploadResult; attempts: number };
    if (committedEarlier) {
      outcome = { result: committedEarlier, attempts: 0 };
    } else {
      if (!spool) {
        spool = await withNativeLease(deps, target, logger, signal, progress);
        await job.updateData({ ...job.data, spool: { host: spool.host, dir: spool.dir, id: spool.id } });
      }
      outcome = await uploadWithBackoff(config, deps.store, spool, logger, signal, progress, () => state.recordUploadRetry(target.name), ownsTheRun);
    }
    const { result, attempts } = outcome;
    await state.recordSuccess(target.name, {
      id: result.manifest.id,
      at: result.manifest.completedAt,
      manifestKey: result.manifestKey,
      bytes: result.manifest.artifacts.reduce((s, a) => s + a.bytes, 0),
      rawBytes: result.manifest.artifacts.reduce((s, a) => s + a.rawBytes, 0),
      quiesceMs: 0,
      durationMs: Date.parse(result.manifest.completedAt) - Date.parse(result.manifest.createdAt),
    });
    await removeSupersededSpools(config.spool.dir, target.name, result.manifest.id).catch(() => []);
    await deps.notifier?.backupSucceeded(target.name, { id: result.manifest.id, at: result.manifest.completedAt }).catch(() => undefined);
    if (deps.afterBackup) {
      await deps.afterBackup(target, result, logger).catch((err: unknown) => logger.error({ err }, 'after-backup task failed; the backup itself is good'));
    }
    return {
      target: target.name,
      id: result.manifest.id,
      manifestKey: result.manifestKey,
      quiesceMs: 0,
      artifacts: result.manifest.artifacts.map((a) => ({ name: a.name, key: a.key, bytes: a.bytes, sha256: a.sha256 })),
      uploadAttempts: attempts,
    };
  } catch (err) {
    const final = isPermanent(err) || job.attempt >= job.maxAttempts;
    const failedAt = new Date().toISOString();
    await state
      .recordFailure(target.name, { at: failedAt, code: errorCode(err), message: errorMessage(err), attempt: job.attempt, final })
      .catch((stateErr: unknown) => logger.warn({ err: stateErr }, 'could not record the failure in Redis'));
    if (final) await deps.notifier?.backupFailed(target.name, { at: failedAt, code: errorCode(err), message: errorMessage(err) }).catch(() => undefined);
    logger.error({ code: errorCode(err), err: errorMessage(err), final }, 'native backup failed');
    throw err;
  } finally {
    await lock.release().catch((err: unknown) => logger.warn({ err }, 'could not release the target lock; it expires on its own'));
  }
}

async function withNativeLease(deps: NativeJobDeps, target: TargetConfig, logger: Logger, signal: AbortSignal, progress: ProgressListener): Promise<SpoolRecord> {
  const { config, nativeLease: lease, redis } = deps;
  progress({ target: target.name, step: 'precheck' });
  const handle = await lease.acquire(target.name, {
    waitMs: config.native.waitSeconds * 1000,
    signal,
    onWaiting: (holders) => logger.info({ holders: holders.map((h) => h.target) }, 'waiting for a native backup slot (native.maxConcurrent)'),
  });
  logger.info({ token: handle.token }, 'native lease acquired');
  const jobsKey = nativeJobsKey(config.redis.prefix);
  try {
    const spool = await takeApplianceBackup({
      config,
      target,
      id: backupIdFor(new Date()),
      logger,
      signal,
      onProgress: progress,
      guard: handle.guard,
      onApplianceJob: async (applianceJobId) => {
        if (applianceJobId === null) await redis.hdel(jobsKey, target.name);
        else {
          const record: NativeJobRecord = { applianceJobId, holder: lease.holderId, token: handle.token, at: new Date().toISOString() };
          await redis.hset(jobsKey, target.name, JSON.stringify(record));
        }
      },
    });
    await handle.release();
    return spool;
  } catch (err) {
    // The slot counts the appliance's job. takeApplianceBackup clears the job's record once the
    // appliance reports it ended (or none was started): then the slot is free to give back. A
    // record still there is a job that may still run (the cancel failed or was not confirmed):
    // like a quiesced appliance that could not be confirmed running, its slot is left to the
    // native watchdog, which cancels the job and frees the slot.
    const still = await redis.hget(jobsKey, target.name).then(
      (raw) => (raw ? (JSON.parse(raw) as NativeJobRecord) : null),
      () => null,
    );
    if (still && still.token === handle.token) {
      await handle.abandon(`the appliance's backup job ${still.applianceJobId} could not be confirmed ended`);
      logger.warn({ applianceJobId: still.applianceJobId }, 'native slot left to the native watchdog: the appliance job may still run');
    } else {
      await handle.release().catch((releaseErr: unknown) => logger.warn({ err: releaseErr }, 'native lease release failed; the watchdog frees it'));
    }
    throw err;
  }
}

/** The upload step, retried from the spool with exponential backoff and jitter. */
export async function uploadWithBackoff(
  config: Config,
  store: ObjectStore,
  spool: SpoolRecord,
  logger: Logger,
  signal: AbortSignal | undefined,
  progress: ProgressListener,
  onRetry: () => Promise<void>,
  beforeCommit?: () => Promise<void>,
): Promise<{ result: UploadResult; attempts: number }> {
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await uploadSpool({ config, spool, store, logger: logger.child({ step: 'upload', uploadAttempt: attempt }), ...(signal ? { signal } : {}), onProgress: progress, ...(beforeCommit ? { beforeCommit } : {}) });
      return { result, attempts: attempt };
    } catch (err) {
      if (isPermanent(err) || signal?.aborted || attempt >= config.worker.uploadAttempts || hasCode(err, 'SPOOL_LOST', 'TARGET_LOCK_LOST', 'JOB_LOCK_LOST')) throw err;
      const capMs = Math.min(config.worker.backoffSeconds * 1000 * 2 ** (attempt - 1), 5 * 60_000);
      const delayMs = Math.round(capMs / 2 + Math.random() * (capMs / 2));
      logger.warn({ err, attempt, delayMs }, 'upload failed; retrying from the spool without asking the appliance again');
      await onRetry().catch(() => undefined);
      await sleep(delayMs, undefined, signal ? { signal } : {}).catch(() => {
        throw new BackupError('ABORTED', 'upload retry cancelled by shutdown; the spool is kept for the next attempt');
      });
    }
  }
}

/** `backup --target` for a native target: no queue, no lease (like the classic command). */
export async function runNativeBackup(input: {
  readonly config: Config;
  readonly target: TargetConfig;
  readonly store: ObjectStore;
  readonly logger: Logger;
  readonly signal?: AbortSignal;
  readonly onProgress?: ProgressListener;
}): Promise<UploadResult> {
  const id = backupIdFor(new Date());
  const logger = input.logger.child({ target: input.target.name, backupId: id });
  const progress = input.onProgress ?? (() => undefined);
  const spool = await takeApplianceBackup({ config: input.config, target: input.target, id, logger, ...(input.signal ? { signal: input.signal } : {}), onProgress: progress, guard: noLeaseGuard });
  const { result } = await uploadWithBackoff(input.config, input.store, spool, logger, input.signal, progress, () => Promise.resolve());
  await removeSupersededSpools(input.config.spool.dir, input.target.name, result.manifest.id).catch(() => undefined);
  return result;
}
