import type { Config, TargetConfig } from '../config/load.ts';
import { errorMessage } from '../errors.ts';
import type { Executor } from '../executors/executor.ts';
import type { FleetLease } from '../locks/fleet-lease.ts';
import type { Logger } from '../log.ts';
import type { DumpSpec } from '../profiles/profile.ts';
import { snapshotDumpCommand } from '../profiles/render.ts';
import { withQuiescedAppliance, type QuiescedResult } from '../quiesce/with-quiesced-appliance.ts';
import { exportHeldSnapshot, type HeldSnapshot } from '../snapshot/held-snapshot.ts';
import { chooseQuiesceMode, type QuiesceMode } from '../snapshot/quiesce-mode.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { dumpToSpool } from './dump.ts';
import type { ProgressListener } from './progress.ts';
import { uploadArtifacts, type UploadedArtifacts } from './upload-step.ts';
import { createSpoolDir, spoolHost, writeSpoolRecord, type QuiesceRecord, type SpoolArtifact, type SpoolRecord } from './spool.ts';

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
 * The backup's quiesced section (`withQuiescedAppliance` owns the lease, the stop and the
 * start). Classic: every database dumped into the spool while the services are stopped — then,
 * with quiesce.startServicesAfter: upload (the classic script's order), the artifacts uploaded.
 * Snapshot (quiesce.mode, where the appliance can): while they are stopped, each database
 * exports a snapshot in a transaction held open on the appliance; once they run again (and the
 * fleet slot is free), each is dumped from its snapshot, so the dumps are the databases as the
 * stop left them and the window does not grow with their size. An upload that fails in the
 * window does not fail the section: the services are started and the spool is kept, so the
 * upload step retries it from the spool without quiescing again. On any other failure the spool
 * directory is removed: no half-written dump survives to be uploaded.
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
    const recordFor = (artifacts: readonly SpoolArtifact[], window: QuiesceRecord | null): SpoolRecord => ({
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
    // Decided before anything stops: the appliance's own pg_dump says whether it can.
    const mode: QuiesceMode | null = config.quiesce.enabled && profile.services.length > 0 ? await chooseQuiesceMode({ config, target, executor, logger, signal }) : null;
    if (mode?.mode === 'classic' && mode.requested === 'snapshot') {
      // Expected for a profile without snapshot mode; worth a warning where the profile has one.
      if (profile.snapshot) logger.warn({ reason: mode.reason }, 'quiesce.mode snapshot is not possible on this appliance; services stay stopped for the whole dump (classic)');
      else logger.info({ reason: mode.reason }, 'classic quiesce: services stay stopped for the whole dump');
    }
    let snapshotFallback: string | undefined;
    const held: { dump: DumpSpec; snapshot: HeldSnapshot }[] = [];
    const closeHeld = async (): Promise<void> => {
      const all = held.splice(0);
      await Promise.all(all.map(({ dump, snapshot }) => snapshot.close().catch((err: unknown) => logger.warn({ artifact: dump.name, err: errorMessage(err) }, 'closing the snapshot session failed'))));
    };
    const dumpOne = async (dump: DumpSpec, command: string): Promise<SpoolArtifact> => {
      signal?.throwIfAborted();
      emit({ target: target.name, step: 'dump', artifact: dump.name, bytes: 0 });
      logger.info({ artifact: dump.name, snapshot: command !== dump.dump }, 'dumping');
      const artifact = await dumpToSpool(executor, { ...dump, dump: command }, spool.dir, {
        timeoutMs: target.timeouts.dumpSeconds * 1000,
        ...(signal ? { signal } : {}),
        onBytes: (bytes) => emit({ target: target.name, step: 'dump', artifact: dump.name, bytes }),
      });
      logger.info({ artifact: dump.name, bytes: artifact.rawBytes, ms: artifact.dumpMs }, 'dumped');
      return artifact;
    };
    let leaseAt = 0;
    let stopAt = 0;
    let startAt = 0;
    const uploadInWindow = config.quiesce.startServicesAfter === 'upload';
    let quiesced: QuiescedResult<{ artifacts: SpoolArtifact[]; uploaded: UploadedArtifacts | null }>;
    try {
      quiesced = await withQuiescedAppliance(
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
            // How long this job waited for the fleet slot: other appliances' windows, not its own work.
            if (phase === 'lease') leaseAt = Date.now();
            if (phase === 'stop') {
              stopAt = Date.now();
              if (leaseAt > 0) timings['leaseWaitMs'] = stopAt - leaseAt;
            }
            if (phase === 'start') startAt = Date.now();
            if (phase !== 'lease') emit({ target: target.name, step: phase });
          },
        },
        async ({ guard, servicesStopped }) => {
          if (stopAt > 0) timings['stopMs'] = Date.now() - stopAt;
          if (mode?.mode === 'snapshot' && servicesStopped) {
            // The session lives through the start and the dump; the export itself is quick.
            const serviceMs = target.timeouts.serviceSeconds * 1000;
            const sessionMs = serviceMs * (2 * profile.services.length + 2) + target.timeouts.dumpSeconds * 1000;
            for (const dump of profile.dumps) {
              if (!dump.snapshot) continue;
              await guard.assertHeld(`snapshot ${dump.name}`);
              signal?.throwIfAborted();
              emit({ target: target.name, step: 'snapshot', artifact: dump.name });
              try {
                const snapshot = await exportHeldSnapshot(executor, dump, { timeoutMs: sessionMs, exportTimeoutMs: serviceMs });
                held.push({ dump, snapshot });
                logger.info({ artifact: dump.name, snapshot: snapshot.id }, 'snapshot exported; its transaction stays open until the dump');
              } catch (err) {
                // The services are down anyway: dump the classic way now rather than fail.
                snapshotFallback = `snapshot export failed: ${errorMessage(err)}`;
                logger.warn({ artifact: dump.name, err: errorMessage(err) }, 'snapshot export failed; dumping with the services stopped (classic)');
                await closeHeld();
                break;
              }
            }
          }
          const artifacts: SpoolArtifact[] = [];
          for (const dump of profile.dumps) {
            if (held.some((h) => h.dump === dump)) continue;
            await guard.assertHeld(`dump ${dump.name}`);
            artifacts.push(await dumpOne(dump, dump.dump));
          }
          // A dump counts only if the lease held throughout: once it lapsed (a paused worker, a
          // Redis failover) a watchdog may have started the services under the running dump.
          // A lapsed lease never comes back, so held now means held all along.
          if (artifacts.length > 0 && servicesStopped) await guard.assertHeld('start (after the dumps)');
          // startServicesAfter: upload implies classic (chooseQuiesceMode), so every dump is here.
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
      // The services run again and the fleet slot is free: read each snapshot while vCenter works.
      for (const { dump, snapshot } of [...held]) {
        quiesced.result.artifacts.push(await dumpOne(dump, snapshotDumpCommand(dump, snapshot.id)));
        await snapshot.close().catch((err: unknown) => logger.warn({ artifact: dump.name, err: errorMessage(err) }, 'closing the snapshot session failed; the dump was complete'));
      }
    } finally {
      await closeHeld();
    }
    const order = (a: SpoolArtifact): number => profile.dumps.findIndex((d) => d.name === a.name);
    const artifacts = quiesced.result.artifacts.sort((a, b) => order(a) - order(b));
    const { window } = quiesced;
    timings['dumpMs'] = artifacts.reduce((sum, a) => sum + a.dumpMs, 0);
    const usedSnapshot = mode?.mode === 'snapshot' && snapshotFallback === undefined && window !== null;
    const reason = mode?.mode === 'classic' ? (mode.requested === 'snapshot' ? mode.reason : undefined) : snapshotFallback;
    const record = recordFor(artifacts, window ? { ...window, mode: usedSnapshot ? 'snapshot' : 'classic', ...(reason ? { reason } : {}) } : null);
    await writeSpoolRecord(record);
    return { spool: record, uploaded: quiesced.result.uploaded };
  } catch (err) {
    await spool.remove();
    throw err;
  }
}
