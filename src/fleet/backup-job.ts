import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { findTarget, type Config, type TargetConfig } from '../config/load.ts';
import { BackupError, errorCode, errorMessage, isPermanent } from '../errors.ts';
import type { Executor } from '../executors/executor.ts';
import type { Logger } from '../log.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { backupIdFor } from '../backup/manifest.ts';
import { committedBackup } from '../catalog/committed-backup.ts';
import type { ProgressEvent } from '../backup/progress.ts';
import { quiesceAndDump, type QuiescedDump } from '../backup/quiesce-step.ts';
import { readSpoolRecord, removeSupersededSpools, spoolHost, type SpoolRecord } from '../backup/spool.ts';
import { uploadSpool, type UploadedArtifacts, type UploadResult } from '../backup/upload-step.ts';
import type { FleetLease } from '../locks/fleet-lease.ts';
import { acquireTargetLock, targetLockTtlMs } from '../locks/target-lock.ts';
import { preflightS3 } from '../storage/preflight.ts';
import type { BackupNotifier } from '../notify/notifier.ts';
import type { FleetState } from '../state/fleet-state.ts';
import { timings } from '../defaults.ts';
import { hasCode } from '../error-codes.ts';
import { RunRecorder, type RunStep } from '../state/run-history.ts';
import { sizeDrop } from '../state/size-drop.ts';

/** Lets the after-backup tasks show on the run's timeline. */
export interface AfterBackupHooks {
  onStep(step: 'verify' | 'retention'): void;
  onVerified(ok: boolean): void;
}

/** What a queued backup job carries. Never secrets: only names and paths. */
export interface BackupJobData {
  readonly target: string;
  readonly runId: string;
  readonly trigger: 'schedule' | 'run';
  /** Set once the dumps are spooled: later attempts upload from here without quiescing again. */
  readonly spool?: { readonly host: string; readonly dir: string; readonly id: string };
}

/** The parts of a queue job the domain needs; workers/ adapts a BullMQ job to it. */
export interface JobHandle {
  readonly id: string;
  readonly data: BackupJobData;
  /** 1 on the first attempt. */
  readonly attempt: number;
  readonly maxAttempts: number;
  updateData(data: BackupJobData): Promise<void>;
  reportProgress(event: ProgressEvent): void;
  /**
   * Throws JOB_LOCK_LOST unless this worker still owns the job in the queue (a paused worker's
   * job may have been handed to another as stalled). Checked with the target lock before the
   * commit, so one run never commits two backups.
   */
  assertOwned?(step: string): Promise<void>;
}

export interface BackupJobDeps {
  readonly config: Config;
  readonly redis: Redis;
  readonly lease: FleetLease;
  readonly state: FleetState;
  readonly store: ObjectStore;
  readonly makeExecutor: (target: TargetConfig) => Executor;
  readonly logger: Logger;
  /** Runs after a committed backup (retention, verify); its failures never fail the backup. */
  readonly afterBackup?: (target: TargetConfig, result: UploadResult, logger: Logger, hooks?: AfterBackupHooks) => Promise<void>;
  /** Told of final failures and of successes (for recovery notices); never fails the backup. */
  readonly notifier?: BackupNotifier;
}

export interface BackupJobResult {
  readonly target: string;
  readonly id: string;
  readonly manifestKey: string;
  readonly quiesceMs: number;
  readonly artifacts: readonly { name: string; key: string; bytes: number; sha256: string }[];
  readonly uploadAttempts: number;
  readonly dumpedAgainBecause?: string;
}

/**
 * One queued backup: target lock → (spool from an earlier attempt, or the quiesced section:
 * fleet lease → stop → dump [→ upload, startServicesAfter: upload] → start → release) → upload
 * (or commit) with backoff, never quiescing again while the spool exists.
 */
export async function processBackupJob(deps: BackupJobDeps, job: JobHandle, signal: AbortSignal): Promise<BackupJobResult> {
  const { config, redis, lease, state } = deps;
  const target = findTarget(config, job.data.target);
  const logger = deps.logger.child({ jobId: job.id, target: target.name, attempt: job.attempt });
  // The run's timeline (run-history.ts): written beside the work, never failing it.
  const run = new RunRecorder(redis, config.redis.prefix, { jobId: job.id, target: target.name, attempt: job.attempt, maxAttempts: job.maxAttempts, trigger: job.data.trigger, holder: lease.holderId });
  const recorded = (write: Promise<void>): Promise<void> => write.catch((err: unknown) => logger.debug({ err }, 'run record not written'));
  void recorded(run.begin());
  void recorded(run.mark('lock'));
  const progress = throttledProgress(state, target.name, lease.holderId, job, (step, artifact) => void recorded(run.mark(step, artifact)));

  const lock = await acquireTargetLock(redis, {
    prefix: config.redis.prefix,
    target: target.name,
    holder: lease.holderId,
    ttlMs: targetLockTtlMs(config),
    logger,
    purpose: 'backup',
    // Twice the TTL: a killed worker's lock has expired by then.
    waitMs: 2 * targetLockTtlMs(config),
    signal,
  });
  const ownsTheRun = async (step: string): Promise<void> => {
    await lock.assertHeld(step);
    await job.assertOwned?.(step);
  };
  try {
    let dumpedAgainBecause: string | undefined;
    let spool: SpoolRecord | undefined;
    let uploaded: UploadedArtifacts | null = null;
    let committedEarlier: UploadResult | null = null;
    if (job.data.spool) {
      if (job.data.spool.host !== spoolHost()) {
        dumpedAgainBecause = `spool of backup ${job.data.spool.id} is on host ${job.data.spool.host}, not reachable from ${spoolHost()}`;
      } else {
        try {
          spool = await readSpoolRecord(job.data.spool.dir);
        } catch (err) {
          dumpedAgainBecause = errorMessage(err);
        }
      }
      // No spool: perhaps an earlier attempt wrote its manifest (the commit point), removed its
      // spool and died before the queue heard of it. That backup is this job's result; dumping
      // again would commit a second backup for one job. If S3 cannot say, this attempt fails and
      // the job is retried (dumping again on a guess is what made the second backup).
      if (dumpedAgainBecause) committedEarlier = await committedBackup(deps.store, config.s3.prefix, target.name, job.data.spool.id, logger);
      if (committedEarlier) {
        dumpedAgainBecause = undefined;
      } else if (dumpedAgainBecause) {
        logger.warn({ reason: dumpedAgainBecause }, 'spool lost: dumping the appliance again');
        await state.recordRequeue(target.name, dumpedAgainBecause);
      } else {
        logger.info({ backupId: job.data.spool.id }, 'uploading from the spool of an earlier attempt; not quiescing again');
      }
    }

    let outcome: { result: UploadResult; attempts: number };
    if (committedEarlier) {
      outcome = { result: committedEarlier, attempts: 0 };
    } else {
      if (!spool) {
        // Before the lease and any stop: a bucket that cannot take the backup fails here. An upload
        // from an earlier attempt's spool stops nothing, so it goes on retrying instead.
        await preflightS3(deps.store, config.s3, logger);
        ({ spool, uploaded } = await quiesceWithLease(deps, target, logger, signal, progress));
        await job.updateData({ ...job.data, spool: { host: spool.host, dir: spool.dir, id: spool.id } });
      }
      outcome = await uploadWithRetries(deps, spool, uploaded, ownsTheRun, logger, signal, progress, () => void recorded(run.mark('upload-retry')));
    }
    const { result, attempts } = outcome;
    const success = {
      id: result.manifest.id,
      at: result.manifest.completedAt,
      manifestKey: result.manifestKey,
      bytes: result.manifest.artifacts.reduce((s, a) => s + a.bytes, 0),
      rawBytes: result.manifest.artifacts.reduce((s, a) => s + a.rawBytes, 0),
      quiesceMs: result.manifest.quiesce?.ms ?? 0,
      durationMs: Date.parse(result.manifest.completedAt) - Date.parse(result.manifest.createdAt),
    };
    await state.recordSuccess(target.name, success);
    const q = result.manifest.quiesce;
    await recorded(
      run.committed({
        id: success.id,
        committedAt: Date.parse(success.at),
        bytes: success.bytes,
        rawBytes: success.rawBytes,
        durationMs: success.durationMs,
        ...(q ? { quiesce: { stoppedAt: Date.parse(q.stoppedAt), startedAt: Date.parse(q.startedAt) } } : {}),
      }),
    );
    const superseded = await removeSupersededSpools(config.spool.dir, target.name, result.manifest.id).catch(() => []);
    if (superseded.length > 0) logger.info({ removed: superseded }, 'removed spools of earlier backups that failed for good; this backup supersedes them');
    await deps.notifier?.backupSucceeded(target.name, { id: result.manifest.id, at: result.manifest.completedAt }).catch(() => undefined);
    // A much smaller backup than the one before is the classic sign of a broken dump.
    const drop = sizeDrop(await state.recentSuccesses(target.name, 2).catch(() => []), config.retention.minSizeRatio);
    if (drop) {
      logger.warn({ ...drop }, 'backup much smaller than the one before (retention.minSizeRatio): check it with `vcsa-backup verify`');
      await deps.notifier?.sizeDropped?.(target.name, drop).catch(() => undefined);
    }
    if (deps.afterBackup) {
      const hooks: AfterBackupHooks = { onStep: (step) => void recorded(run.mark(step)), onVerified: (ok) => void recorded(run.verified(ok)) };
      await deps.afterBackup(target, result, logger, hooks).catch((err: unknown) => logger.error({ err }, 'after-backup task failed; the backup itself is good'));
    }
    await recorded(run.end('ok'));
    return {
      target: target.name,
      id: result.manifest.id,
      manifestKey: result.manifestKey,
      quiesceMs: result.manifest.quiesce?.ms ?? 0,
      artifacts: result.manifest.artifacts.map((a) => ({ name: a.name, key: a.key, bytes: a.bytes, sha256: a.sha256 })),
      uploadAttempts: attempts,
      ...(dumpedAgainBecause ? { dumpedAgainBecause } : {}),
    };
  } catch (err) {
    const final = isPermanent(err) || job.attempt >= job.maxAttempts;
    const failedAt = new Date().toISOString();
    await state
      .recordFailure(target.name, { at: failedAt, code: errorCode(err), message: errorMessage(err), attempt: job.attempt, final })
      .catch((stateErr: unknown) => logger.warn({ err: stateErr }, 'could not record the failure in Redis'));
    await recorded(run.end(final ? 'failed' : 'retrying', { code: errorCode(err), message: errorMessage(err) }));
    if (final) await deps.notifier?.backupFailed(target.name, { at: failedAt, code: errorCode(err), message: errorMessage(err) }).catch(() => undefined);
    throw err;
  } finally {
    await lock.release().catch((err: unknown) => logger.warn({ err }, 'could not release the target lock; it expires on its own'));
  }
}

async function quiesceWithLease(
  deps: BackupJobDeps,
  target: TargetConfig,
  logger: Logger,
  signal: AbortSignal,
  progress: (e: ProgressEvent) => void,
): Promise<QuiescedDump> {
  const { config, lease } = deps;
  const executor = deps.makeExecutor(target);
  try {
    return await quiesceAndDump({
      config,
      target,
      executor,
      lease,
      id: backupIdFor(new Date()),
      logger: logger.child({ step: 'quiesce' }),
      signal,
      onProgress: progress,
      store: deps.store,
    });
  } finally {
    await executor.close().catch(() => undefined);
  }
}

async function uploadWithRetries(
  deps: BackupJobDeps,
  spool: SpoolRecord,
  /** Artifacts already uploaded in the quiesce window (startServicesAfter: upload): the first attempt only commits them. */
  uploaded: UploadedArtifacts | null,
  ownsTheRun: (step: string) => Promise<void>,
  logger: Logger,
  signal: AbortSignal,
  progress: (e: ProgressEvent) => void,
  onRetry: () => void,
): Promise<{ result: UploadResult; attempts: number }> {
  const { config, store, state } = deps;
  const maxAttempts = config.worker.uploadAttempts;
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await uploadSpool({ config, spool, uploaded: attempt === 1 ? uploaded : null, store, logger: logger.child({ step: 'upload', uploadAttempt: attempt }), signal, onProgress: progress, beforeCommit: () => ownsTheRun('the manifest') });
      return { result, attempts: attempt };
    } catch (err) {
      if (isPermanent(err) || signal.aborted || attempt >= maxAttempts || hasCode(err, 'SPOOL_LOST', 'TARGET_LOCK_LOST', 'JOB_LOCK_LOST')) throw err;
      // Exponential backoff with full jitter, capped: S3 outages tend to last minutes.
      const capMs = Math.min(config.worker.backoffSeconds * 1000 * 2 ** (attempt - 1), timings.uploadBackoffCapMs);
      const delayMs = Math.round(capMs / 2 + Math.random() * (capMs / 2));
      logger.warn({ err, attempt, delayMs }, 'upload failed; retrying from the spool without quiescing again');
      await state.recordUploadRetry(spool.target).catch(() => undefined);
      onRetry();
      await sleep(delayMs, undefined, { signal }).catch(() => {
        throw new BackupError('ABORTED', 'upload retry cancelled by shutdown; the spool is kept for the next attempt');
      });
    }
  }
}

const runSteps: ReadonlySet<string> = new Set<RunStep>(['precheck', 'stop', 'dump', 'start', 'compress', 'upload', 'manifest', 'verify', 'retention']);

/**
 * A job's progress, throttled: to BullMQ (run --wait) and the fleet state (status, dashboard) at
 * most every progressThrottleMs per step, and every change of step to `onStep` (the run's timeline).
 */
export function throttledProgress(state: FleetState, target: string, holder: string, job: JobHandle, onStep: (step: RunStep, artifact?: string) => void = () => undefined): (e: ProgressEvent) => void {
  let last = 0;
  let lastStep = '';
  return (event) => {
    const now = Date.now();
    const step = `${event.step} ${event.artifact ?? ''}`;
    if (step !== lastStep && runSteps.has(event.step)) onStep(event.step as RunStep, event.artifact);
    if (step === lastStep && now - last < timings.progressThrottleMs) return;
    last = now;
    lastStep = step;
    job.reportProgress(event);
    void state
      .setStep(target, {
        step: event.step,
        at: new Date(now).toISOString(),
        holder,
        ...(event.artifact ? { artifact: event.artifact } : {}),
        ...(event.bytes !== undefined ? { bytes: event.bytes } : {}),
        ...(event.totalBytes !== undefined ? { totalBytes: event.totalBytes } : {}),
      })
      .catch(() => undefined);
  };
}
