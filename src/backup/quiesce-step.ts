import type { Config, TargetConfig } from '../config/load.ts';
import { errorMessage } from '../errors.ts';
import type { Executor } from '../executors/executor.ts';
import type { FleetLease } from '../locks/fleet-lease.ts';
import type { Logger } from '../log.ts';
import { withQuiescedAppliance } from '../quiesce/with-quiesced-appliance.ts';
import { dumpToSpool } from './dump.ts';
import type { ProgressListener } from './progress.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { uploadArtifacts, type UploadedArtifacts } from './upload-step.ts';
import { createSpoolDir, spoolHost, writeSpoolRecord, type SpoolArtifact, type SpoolRecord } from './spool.ts';

export interface QuiesceStepInput {
  readonly config: Config;
  readonly target: TargetConfig;
  readonly executor: Executor;
  /** The fleet lease; null for the single-process `backup` command. */
  readonly lease: FleetLease | null;
  readonly id: string;
  readonly logger: Logger;
  readonly signal?: AbortSignal | undefined;
  readonly onProgress?: ProgressListener | undefined;
  /** Where artifacts go when quiesce.startServicesAfter is "upload". */
  readonly store: ObjectStore;
}

/** The spooled dumps, and with startServicesAfter: upload the artifacts uploaded in the window. */
export interface QuiescedDump {
  readonly spool: SpoolRecord;
  /** null: nothing uploaded yet (the default order, or an upload in the window that failed). */
  readonly uploaded: UploadedArtifacts | null;
}

/**
 * The backup's quiesced section: the work is every database dumped into the spool — then, with
 * quiesce.startServicesAfter: upload (the classic script's order), the artifacts uploaded — while
 * the appliance's services are stopped; `withQuiescedAppliance` owns the lease, the stop and the
 * start. An upload that fails there does not fail the section: the services are started and the
 * spool is kept, so the upload step retries it from the spool without quiescing again. On any
 * other failure the spool directory is removed: no half-written dump survives to be uploaded.
 */
export async function quiesceAndDump(input: QuiesceStepInput): Promise<QuiescedDump> {
  const { config, target, executor, id, logger, signal } = input;
  const profile = target.boundProfile;
  const emit = input.onProgress ?? (() => undefined);
  const startedAt = Date.now();

  // Local and cheap: a full spool fails before the appliance is asked anything.
  const spool = await createSpoolDir(config.spool.dir, target.name, id, config.spool.minFreeMiB);
  try {
    const timings: Record<string, number> = {};
    const recordFor = (artifacts: readonly SpoolArtifact[], window: SpoolRecord['quiesce']): SpoolRecord => ({
      version: 1,
      target: target.name,
      id,
      profile: profile.name,
      appliance: executor.description,
      host: spoolHost(),
      dir: spool.dir,
      createdAt: new Date(startedAt).toISOString(),
      quiesce: window,
      artifacts: [...artifacts],
      timings: { ...timings },
    });
    const precheckAt = Date.now();
    let startAt = 0;
    const uploadInWindow = config.quiesce.startServicesAfter === 'upload';
    const { result, window } = await withQuiescedAppliance(
      {
        lease: input.lease,
        target,
        executor,
        logger,
        signal,
        stopServices: config.quiesce.enabled,
        waitMs: config.quiesce.waitSeconds * 1000,
        onPhase: (phase) => {
          if (phase !== 'precheck') timings['precheckMs'] ??= Date.now() - precheckAt;
          if (phase === 'start') startAt = Date.now();
          if (phase !== 'lease') emit({ target: target.name, step: phase });
        },
      },
      async ({ guard }) => {
        const artifacts: SpoolArtifact[] = [];
        for (const dump of profile.dumps) {
          await guard.assertHeld(`dump ${dump.name}`);
          signal?.throwIfAborted();
          emit({ target: target.name, step: 'dump', artifact: dump.name, bytes: 0 });
          logger.info({ artifact: dump.name }, 'dumping');
          const artifact = await dumpToSpool(executor, dump, spool.dir, {
            timeoutMs: target.timeouts.dumpSeconds * 1000,
            ...(signal ? { signal } : {}),
            onBytes: (bytes) => emit({ target: target.name, step: 'dump', artifact: dump.name, bytes }),
          });
          logger.info({ artifact: dump.name, bytes: artifact.rawBytes, ms: artifact.dumpMs }, 'dumped');
          artifacts.push(artifact);
        }
        if (!uploadInWindow) return { artifacts, uploaded: null };
        // Written first: if this process dies during the upload, the spool is complete.
        const provisional = recordFor(artifacts, null);
        await writeSpoolRecord(provisional);
        await guard.assertHeld('upload');
        try {
          const uploaded = await uploadArtifacts({ config, spool: provisional, store: input.store, logger, ...(signal ? { signal } : {}), onProgress: emit });
          return { artifacts, uploaded };
        } catch (err) {
          if (signal?.aborted) throw err;
          logger.warn({ err: errorMessage(err) }, 'upload with the services stopped failed; starting them, the upload is retried from the spool');
          return { artifacts, uploaded: null };
        }
      },
    );
    if (startAt > 0) timings['startMs'] = Date.now() - startAt;
    timings['dumpMs'] = result.artifacts.reduce((sum, a) => sum + a.dumpMs, 0);
    const record = recordFor(result.artifacts, window);
    await writeSpoolRecord(record);
    return { spool: record, uploaded: result.uploaded };
  } catch (err) {
    await spool.remove();
    throw err;
  }
}
