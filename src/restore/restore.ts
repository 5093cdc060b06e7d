import { createReadStream } from 'node:fs';
import type { Redis } from 'ioredis';
import { findBackup, type CatalogEntry } from '../catalog/catalog.ts';
import type { Config, TargetConfig } from '../config/load.ts';
import { decryptionKeys } from '../crypto/key-ring.ts';
import { BackupError, errorCode, errorMessage } from '../errors.ts';
import type { Executor } from '../executors/executor.ts';
import { fleetLeaseFor, holderIdentity, type FleetLease } from '../locks/fleet-lease.ts';
import { acquireTargetLock, targetLockTtlMs, type TargetLock } from '../locks/target-lock.ts';
import type { Logger } from '../log.ts';
import type { DumpSpec } from '../profiles/profile.ts';
import { restoreCommand, shellQuote } from '../profiles/render.ts';
import { withQuiescedAppliance } from '../quiesce/with-quiesced-appliance.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { fetchArtifacts, type FetchedArtifact } from './fetch-artifacts.ts';
import { createWorkDir } from './work-dir.ts';

export type RestoreStep = 'find' | 'download' | 'lock' | 'precheck' | 'lease' | 'stop' | 'copy' | 'restore' | 'start' | 'done';

export interface RestoreProgress {
  readonly step: RestoreStep;
  readonly artifact?: string;
  readonly bytes?: number;
  readonly totalBytes?: number;
}

export interface RestoreInput {
  readonly config: Config;
  /** The target whose backups are restored. */
  readonly source: string;
  /** The appliance restored onto: the source itself, or another one (`--into`). */
  readonly target: TargetConfig;
  /** A backup id, 'latest', or an entry already found (e.g. shown to the operator for confirmation). */
  readonly backup: string | CatalogEntry;
  readonly store: ObjectStore;
  /** Runs commands on `target`. */
  readonly executor: Executor;
  readonly redis: Redis;
  readonly logger: Logger;
  readonly signal?: AbortSignal;
  readonly onProgress?: (event: RestoreProgress) => void;
  /** Identifies this process in the lock and lease tables. */
  readonly holderId?: string;
  /** Where dumps are downloaded; default config.spool.dir. */
  readonly workRoot?: string;
}

export interface RestoreOutcome {
  readonly source: string;
  readonly target: string;
  readonly id: string;
  readonly manifestKey: string;
  readonly restored: string[];
  /** From services stopped to services confirmed running. */
  readonly downtimeMs: number;
  readonly ms: number;
}

/** Matches each artifact of the backup to the restore command of the target's profile. */
function planDumps(entry: CatalogEntry, target: TargetConfig): { artifactName: string; dump: DumpSpec }[] {
  const profile = target.boundProfile;
  if (entry.manifest.profile !== profile.name) {
    throw new BackupError(
      'RESTORE_PROFILE_MISMATCH',
      `backup ${entry.id} was taken with profile ${entry.manifest.profile}, but ${target.name} uses ${profile.name}; restore it onto an appliance of the same kind`,
      { permanent: true },
    );
  }
  return entry.manifest.artifacts.map((a) => {
    const dump = profile.dumps.find((d) => d.name === a.name);
    if (!dump) {
      throw new BackupError('RESTORE_PROFILE_MISMATCH', `backup ${entry.id} has a "${a.name}" dump that profile ${profile.name} cannot restore (it knows ${profile.dumps.map((d) => d.name).join(', ')})`, { permanent: true });
    }
    return { artifactName: a.name, dump };
  });
}

/**
 * Restores one backup onto an appliance:
 *   find → download and check every artifact (nothing touched yet) → target lock → precheck
 *   → fleet lease → stop services → for each dump: copy it onto the appliance, run the
 *   profile's restore command, remove the copy → start services and confirm (always) → free
 *   the lease (or leave it to the watchdog when the services are not confirmed) and the lock.
 * A failure part way names what was restored and what was not; the services are started again
 * in every case.
 */
export async function restoreBackup(input: RestoreInput): Promise<RestoreOutcome> {
  const { config, target, store, redis, signal } = input;
  const started = Date.now();
  const emit = input.onProgress ?? (() => undefined);
  const holder = input.holderId ?? holderIdentity('restore');

  emit({ step: 'find' });
  const entry = typeof input.backup === 'string' ? await findBackup(store, config.s3.prefix, input.source, input.backup, { logger: input.logger }) : input.backup;
  const logger = input.logger.child({ source: input.source, target: target.name, backupId: entry.id, purpose: 'restore' });
  const plan = planDumps(entry, target);

  const work = await createWorkDir(input.workRoot ?? config.spool.dir, 'restore');
  try {
    emit({ step: 'download' });
    const fetched = await fetchArtifacts(store, entry.manifest, work.dir, {
      ...(signal ? { signal } : {}),
      keys: decryptionKeys(config.encryption),
      onProgress: (p) => emit({ step: 'download', artifact: p.artifact, bytes: p.bytes, totalBytes: p.totalBytes }),
    });
    logger.info({ artifacts: fetched.map((f) => ({ name: f.artifact.name, rawBytes: f.rawBytes })) }, 'downloaded and checked every artifact');

    emit({ step: 'lock' });
    const lock: TargetLock = await acquireTargetLock(redis, {
      prefix: config.redis.prefix,
      target: target.name,
      holder,
      ttlMs: targetLockTtlMs(config),
      logger,
      purpose: 'restore',
    });
    try {
      const lease = fleetLeaseFor(config, redis, { holderId: holder, logger });
      const { restored, downtimeMs } = await restoreWhileQuiesced({ input, entry, plan, fetched, lease, logger, emit });
      emit({ step: 'done' });
      logger.info({ restored, downtimeMs }, 'restore complete');
      return { source: input.source, target: target.name, id: entry.id, manifestKey: entry.manifestKey, restored, downtimeMs, ms: Date.now() - started };
    } finally {
      await lock.release().catch((err: unknown) => logger.warn({ err }, 'releasing the target lock failed; it expires on its own'));
    }
  } finally {
    await work.remove();
  }
}

/**
 * The stop → restore every dump → start section, in `withQuiescedAppliance` (precheck, fleet
 * lease, stop, start and confirm, release or abandon to the watchdog). A failure names what was
 * restored, what was not, and whether the services run again.
 */
async function restoreWhileQuiesced(args: {
  input: RestoreInput;
  entry: CatalogEntry;
  plan: { artifactName: string; dump: DumpSpec }[];
  fetched: FetchedArtifact[];
  lease: FleetLease;
  logger: Logger;
  emit: (e: RestoreProgress) => void;
}): Promise<{ restored: string[]; downtimeMs: number }> {
  const { input, entry, plan, fetched, lease, logger, emit } = args;
  const { config, target, executor, signal } = input;
  const profile = target.boundProfile;
  const serviceTimeoutMs = target.timeouts.serviceSeconds * 1000;
  const tmpDir = profile.variables['APPLIANCE_TMP'] ?? '/tmp';
  const restored: string[] = [];
  let failedAt = null as { name: string; error: unknown } | null;
  let down: string[] | null = [];
  const startedAt = Date.now();

  try {
    const { window } = await withQuiescedAppliance(
      {
        lease,
        target,
        executor,
        logger,
        signal,
        waitMs: config.quiesce.waitSeconds * 1000,
        onPhase: (phase) => emit({ step: phase }),
        onServicesAfterFailure: (d) => (down = d),
      },
      async ({ guard }) => {
        for (const { artifactName, dump } of plan) {
          const file = fetched.find((f) => f.artifact.name === artifactName);
          if (!file) throw new Error(`unreachable: ${artifactName} was not downloaded`);
          try {
            await guard.assertHeld(`restore ${artifactName}`);
            signal?.throwIfAborted();
            const remote = `${tmpDir}/vcsa-restore-${entry.id}-${dump.file}`;
            emit({ step: 'copy', artifact: artifactName, bytes: 0, totalBytes: file.rawBytes });
            try {
              await executor.run(`mkdir -p ${shellQuote(tmpDir)} && umask 077 && cat > ${shellQuote(remote)}`, {
                stdin: createReadStream(file.path),
                timeoutMs: target.timeouts.restoreSeconds * 1000,
                ...(signal ? { signal } : {}),
              });
              emit({ step: 'restore', artifact: artifactName });
              logger.info({ artifact: artifactName, remote }, 'restoring');
              await executor.run(restoreCommand(dump, remote), { timeoutMs: target.timeouts.restoreSeconds * 1000, ...(signal ? { signal } : {}) });
            } finally {
              // The dump holds the whole database: never leave it in the appliance's scratch space.
              await executor.run(`rm -f ${shellQuote(remote)}`, { timeoutMs: serviceTimeoutMs }).catch((err: unknown) => logger.warn({ err, remote }, 'could not remove the copied dump from the appliance'));
            }
            restored.push(artifactName);
            logger.info({ artifact: artifactName }, 'restored');
          } catch (err) {
            failedAt = { name: artifactName, error: err };
            throw err;
          }
        }
      },
    );
    return { restored, downtimeMs: window?.ms ?? Date.now() - startedAt };
  } catch (failure) {
    const missing = plan.map((p) => p.artifactName).filter((name) => !restored.includes(name));
    const notRestored = missing.map((name) => (failedAt?.name === name ? `${name} (${errorMessage(failedAt.error)})` : `${name} (not attempted)`));
    const servicesDown = down as string[] | null;
    const services =
      profile.services.length === 0 ? 'no services to start'
      : servicesDown === null ? 'could not check whether the services run: check the appliance'
      : servicesDown.length === 0 ? 'services are running again'
      : `services NOT running: ${servicesDown.join(', ')}; start them by hand`;
    throw new BackupError(
      'RESTORE_FAILED',
      `restore of ${input.source}/${entry.id} onto ${target.name} failed. restored: ${restored.join(', ') || 'none'}; not restored: ${notRestored.join('; ')}. ${services}.` +
        (failedAt ? '' : ` Cause: ${errorMessage(failure)}`),
      {
        cause: failure,
        permanent: errorCode(failure) !== 'LEASE_LOST',
        details: { restored, notRestored: missing, cause: errorCode(failure), servicesDown },
      },
    );
  }
}
