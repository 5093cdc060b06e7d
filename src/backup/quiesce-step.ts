import type { Config, TargetConfig } from '../config/load.ts';
import { combineErrors } from '../errors.ts';
import type { Executor } from '../executors/executor.ts';
import type { Logger } from '../log.ts';
import { dumpToSpool } from './dump.ts';
import type { ProgressListener, QuiesceGuard } from './progress.ts';
import { stopServices } from './services.ts';
import { createSpoolDir, spoolHost, writeSpoolRecord, type SpoolArtifact, type SpoolRecord } from './spool.ts';

export interface QuiesceStepInput {
  readonly config: Config;
  readonly target: TargetConfig;
  readonly executor: Executor;
  readonly id: string;
  readonly logger: Logger;
  readonly guard: QuiesceGuard;
  readonly signal?: AbortSignal;
  readonly onProgress?: ProgressListener;
  /**
   * Runs after the dumps, while the services are still stopped (quiesce.startServicesAfter:
   * upload, the classic script's order). Its failure does not fail the step: the services are
   * started and the spool is kept, so the upload is retried from it without quiescing again.
   */
  readonly whileQuiesced?: ((spool: SpoolRecord) => Promise<void>) | undefined;
}

/**
 * stop services → dump every database into the spool → start services (always) → confirm.
 * Holds the appliance quiesced only for the dumps. On any failure the spool directory is
 * removed: no half-written dump survives to be uploaded.
 */
export async function quiesceAndDump(input: QuiesceStepInput): Promise<SpoolRecord> {
  const { config, target, executor, id, logger, guard, signal } = input;
  const profile = target.boundProfile;
  const emit = input.onProgress ?? (() => undefined);
  const serviceTimeoutMs = target.timeouts.serviceSeconds * 1000;
  const timings: Record<string, number> = {};
  const startedAt = Date.now();

  emit({ target: target.name, step: 'precheck' });
  const spool = await createSpoolDir(config.spool.dir, target.name, id, config.spool.minFreeMiB);
  try {
    // Reach the appliance before stopping anything: an unreachable host or a bad key fails here.
    await executor.run('true', { timeoutMs: serviceTimeoutMs, ...(signal ? { signal } : {}) });
    timings['precheckMs'] = Date.now() - startedAt;

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
    const quiesce = config.quiesce.enabled && profile.services.length > 0;
    await guard.assertHeld('stop');
    emit({ target: target.name, step: 'stop' });
    const stopAt = Date.now();
    const startServices = quiesce
      ? await stopServices({ executor, services: profile.services, timeoutMs: serviceTimeoutMs, logger }, signal)
      : null;
    const stoppedAt = new Date();
    timings['stopMs'] = Date.now() - stopAt;

    const artifacts: SpoolArtifact[] = [];
    let failure: unknown;
    let failed = false;
    try {
      for (const dump of profile.dumps) {
        await guard.assertHeld('dump');
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
      if (input.whileQuiesced) {
        // Written first, so that a failed upload can be retried from the spool.
        const provisional = recordFor(artifacts, null);
        await writeSpoolRecord(provisional);
        await guard.assertHeld('upload');
        try {
          await input.whileQuiesced(provisional);
        } catch (err) {
          if (signal?.aborted) throw err;
          logger.warn({ err }, 'upload with the services stopped failed; starting them, the upload is retried from the spool');
        }
      }
    } catch (err) {
      failure = err;
      failed = true;
    } finally {
      if (startServices) {
        emit({ target: target.name, step: 'start' });
        const startAt = Date.now();
        try {
          await startServices();
        } catch (startErr) {
          failure = failed ? combineErrors(failure, [startErr]) : startErr;
          failed = true;
        }
        timings['startMs'] = Date.now() - startAt;
      }
    }
    if (failed) throw failure;
    const servicesBackAt = new Date();
    timings['dumpMs'] = artifacts.reduce((sum, a) => sum + a.dumpMs, 0);

    const record = recordFor(
      artifacts,
      startServices ? { stoppedAt: stoppedAt.toISOString(), startedAt: servicesBackAt.toISOString(), ms: servicesBackAt.getTime() - stopAt } : null,
    );
    await writeSpoolRecord(record);
    return record;
  } catch (err) {
    await spool.remove();
    throw err;
  }
}
