import { preflightS3 } from '../storage/preflight.ts';
import type { Config, TargetConfig } from '../config/load.ts';
import type { Executor } from '../executors/executor.ts';
import type { Logger } from '../log.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { backupIdFor, type Manifest } from './manifest.ts';
import type { ProgressListener } from './progress.ts';
import { quiesceAndDump } from './quiesce-step.ts';
import { removeSupersededSpools } from './spool.ts';
import { uploadSpool } from './upload-step.ts';

export interface BackupInput {
  readonly config: Config;
  readonly target: TargetConfig;
  readonly executor: Executor;
  readonly store: ObjectStore;
  readonly logger: Logger;
  readonly signal?: AbortSignal;
  readonly onProgress?: ProgressListener;
  /** Defaults to now. */
  readonly id?: string;
}

export interface BackupOutcome {
  readonly manifest: Manifest;
  readonly manifestKey: string;
}

/** One appliance, start to finish, in this process: the `backup` command and the classic cron use. */
export async function runBackup(input: BackupInput): Promise<BackupOutcome> {
  const id = input.id ?? backupIdFor(new Date());
  const logger = input.logger.child({ target: input.target.name, backupId: id });
  const upload = {
    config: input.config,
    store: input.store,
    logger: logger.child({ step: 'upload' }),
    ...(input.signal ? { signal: input.signal } : {}),
    ...(input.onProgress ? { onProgress: input.onProgress } : {}),
  };
  // Before anything stops: a bucket that cannot take the backup fails here, nothing touched.
  await preflightS3(input.store, input.config.s3, logger);
  const { spool, uploaded } = await quiesceAndDump({
    config: input.config,
    target: input.target,
    executor: input.executor,
    id,
    logger: logger.child({ step: 'quiesce' }),
    lease: null,
    ...(input.signal ? { signal: input.signal } : {}),
    ...(input.onProgress ? { onProgress: input.onProgress } : {}),
    store: input.store,
  });
  const outcome = await uploadSpool({ ...upload, spool, uploaded });
  // Spools of earlier runs whose upload failed (this command does not retry them) are superseded now.
  await removeSupersededSpools(input.config.spool.dir, input.target.name, outcome.manifest.id).catch(() => undefined);
  return outcome;
}

/** The `backups[]` entry of `backup --json` and `run --wait --json` (DESIGN §6). */
export function backupSummary(bucket: string, outcome: BackupOutcome): Record<string, unknown> {
  const m = outcome.manifest;
  return {
    target: m.target,
    id: m.id,
    bucket,
    manifestKey: outcome.manifestKey,
    quiesceMs: m.quiesce?.ms ?? 0,
    // snapshot: services down for stop + snapshot export + start only; classic: for the whole dump.
    quiesceMode: m.quiesce ? (m.quiesce.mode ?? 'classic') : null,
    artifacts: m.artifacts.map((a) => ({ name: a.name, key: a.key, bytes: a.bytes, sha256: a.sha256, rawBytes: a.rawBytes })),
    createdAt: m.createdAt,
    completedAt: m.completedAt,
  };
}
