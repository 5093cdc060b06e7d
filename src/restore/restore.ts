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
import { checksFor } from './consistency.ts';
import { restoreRunId } from './database-names.ts';
import { swapDatabases, type UndoSwap } from './database-swap.ts';
import { stageDatabases, type StagedDatabase } from './staged-databases.ts';
import { createWorkDir } from './work-dir.ts';

export type RestoreStep = 'find' | 'download' | 'lock' | 'load' | 'precheck' | 'lease' | 'stop' | 'swap' | 'copy' | 'restore' | 'start' | 'done';

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
  /** Free space asked of the appliance per byte of dump (default defaultSpaceFactor). */
  readonly spaceFactor?: number;
}

/** A database replaced by the restore, kept under another name for `restore --rollback`. */
export interface KeptDatabase {
  readonly artifact: string;
  readonly database: string;
  readonly keptAs: string;
}

export interface RestoreOutcome {
  readonly source: string;
  readonly target: string;
  readonly id: string;
  readonly manifestKey: string;
  readonly restored: string[];
  /** This restore's run id: the suffix of the databases it made and kept. */
  readonly run: string;
  /** Databases swapped out (restore --rollback swaps them back); [] when every dump was restored in place. */
  readonly kept: KeptDatabase[];
  /** Tables and rows of each database loaded before the swap. */
  readonly loaded: { artifact: string; database: string; tables: number; rows: number }[];
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
 *   find → download and check every artifact (nothing touched yet) → target lock → load each
 *   dump into a new database `<db>_restore_<run>` beside the current one and check it, while
 *   the services still run (staged-databases.ts) → precheck → fleet lease → stop services →
 *   swap the names in one transaction, keeping the current database as `<db>_before_<run>`
 *   (database-swap.ts) → dumps without a database on the appliance: copy, run the profile's
 *   restore command in place, remove the copy → start services and confirm (always) → free the
 *   lease (or leave it to the watchdog when the services are not confirmed) and the lock.
 * A failure before the swap drops the new databases: nothing changed. A failure of an in-place
 * restore after the swap swaps the names back. The services are started again in every case.
 */
export async function restoreBackup(input: RestoreInput): Promise<RestoreOutcome> {
  const { config, target, store, redis, signal } = input;
  const started = Date.now();
  const emit = input.onProgress ?? (() => undefined);
  const holder = input.holderId ?? holderIdentity('restore');
  const run = restoreRunId(new Date(started));

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
      // Loading needs no quiesce: the services keep running on the current databases meanwhile.
      const staged = await stageDatabases({
        executor: input.executor,
        targetName: target.name,
        items: plan.map((p) => ({ ...p, file: fetchedFile(fetched, p.artifactName) })),
        run,
        checks: checksFor(entry.manifest.profile, config.verify.checks),
        applianceTmp: target.boundProfile.variables['APPLIANCE_TMP'] ?? '/tmp',
        timeoutMs: target.timeouts.serviceSeconds * 1000,
        loadTimeoutMs: target.timeouts.restoreSeconds * 1000,
        ...(input.spaceFactor !== undefined ? { spaceFactor: input.spaceFactor } : {}),
        logger,
        signal,
        onLoad: (artifact) => emit({ step: 'load', artifact }),
      });
      let swapped = false;
      try {
        const lease = fleetLeaseFor(config, redis, { holderId: holder, logger });
        const { restored, downtimeMs } = await restoreWhileQuiesced({
          input,
          entry,
          plan: plan.filter((p) => staged.inPlace.some((i) => i.artifactName === p.artifactName)),
          swap: staged.databases,
          onSwapped: (done) => (swapped = done),
          fetched,
          lease,
          logger,
          emit,
        });
        emit({ step: 'done' });
        const kept = staged.databases.map((d) => ({ artifact: d.artifactName, database: d.database, keptAs: d.keepAs }));
        logger.info({ restored, downtimeMs, kept }, 'restore complete');
        return {
          source: input.source,
          target: target.name,
          id: entry.id,
          manifestKey: entry.manifestKey,
          restored,
          run,
          kept,
          loaded: staged.databases.map((d) => ({ artifact: d.artifactName, database: d.database, tables: d.tables.length, rows: d.rows })),
          downtimeMs,
          ms: Date.now() - started,
        };
      } finally {
        if (!swapped) await staged.drop().catch((err: unknown) => logger.error({ err }, 'could not drop the databases this restore made; drop them by hand'));
      }
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
function fetchedFile(fetched: readonly FetchedArtifact[], artifactName: string): FetchedArtifact {
  const file = fetched.find((f) => f.artifact.name === artifactName);
  if (!file) throw new Error(`unreachable: ${artifactName} was not downloaded`);
  return file;
}

async function restoreWhileQuiesced(args: {
  input: RestoreInput;
  entry: CatalogEntry;
  /** Dumps restored in place by the profile's restore command. */
  plan: { artifactName: string; dump: DumpSpec }[];
  /** Databases loaded beforehand, swapped in first. */
  swap: readonly StagedDatabase[];
  /** Told whether the swap is in effect (true after it, false again if undone). */
  onSwapped: (swapped: boolean) => void;
  fetched: FetchedArtifact[];
  lease: FleetLease;
  logger: Logger;
  emit: (e: RestoreProgress) => void;
}): Promise<{ restored: string[]; downtimeMs: number }> {
  const { input, entry, plan, swap, fetched, lease, logger, emit } = args;
  const { config, target, executor, signal } = input;
  const profile = target.boundProfile;
  const serviceTimeoutMs = target.timeouts.serviceSeconds * 1000;
  const tmpDir = profile.variables['APPLIANCE_TMP'] ?? '/tmp';
  const restored: string[] = [];
  let failedAt = null as { name: string; error: unknown } | null;
  let down: string[] | null = [];
  let swappedBack = false;
  const startedAt = Date.now();

  async function restoreInPlace(guard: { assertHeld(what: string): Promise<void> }): Promise<void> {
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
  }

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
        let undoSwap: UndoSwap | null = null;
        if (swap.length > 0) {
          try {
            await guard.assertHeld(`swap ${swap.map((s) => s.artifactName).join(' and ')}`);
            emit({ step: 'swap' });
            undoSwap = await swapDatabases(swap.map((s) => ({ server: s.server, database: s.database, incoming: s.staged, keepAs: s.keepAs })), logger);
          } catch (err) {
            failedAt = { name: swap[0]?.artifactName ?? 'swap', error: err };
            throw err;
          }
          args.onSwapped(true);
          restored.push(...swap.map((s) => s.artifactName));
        }
        try {
          await restoreInPlace(guard);
        } catch (err) {
          if (undoSwap) {
            // All or nothing: the swapped databases go back too.
            logger.error({ err }, 'an in-place restore failed after the swap; swapping the databases back');
            await undoSwap();
            args.onSwapped(false);
            restored.splice(0, swap.length);
            swappedBack = true;
          }
          throw err;
        }
      },
    );
    return { restored, downtimeMs: window?.ms ?? Date.now() - startedAt };
  } catch (failure) {
    const missing = [...swap.map((s) => s.artifactName), ...plan.map((p) => p.artifactName)].filter((name) => !restored.includes(name));
    const notRestored = missing.map((name) =>
      failedAt?.name === name ? `${name} (${errorMessage(failedAt.error)})`
      : swappedBack && swap.some((s) => s.artifactName === name) ? `${name} (swapped back)`
      : `${name} (not attempted)`,
    );
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
