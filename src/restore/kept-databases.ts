import type { Redis } from 'ioredis';
import type { Config, TargetConfig } from '../config/load.ts';
import { BackupError } from '../errors.ts';
import type { Executor } from '../executors/executor.ts';
import { fleetLeaseFor, holderIdentity } from '../locks/fleet-lease.ts';
import { acquireTargetLock, targetLockTtlMs } from '../locks/target-lock.ts';
import type { Logger } from '../log.ts';
import { withQuiescedAppliance } from '../quiesce/with-quiesced-appliance.ts';
import { AppliancePostgres } from './appliance-postgres.ts';
import { checkDatabaseName, derivedName, parseDerivedName, restoreRunId, runIdTime } from './database-names.ts';
import { swapDatabases } from './database-swap.ts';

/**
 * The databases restores kept (`<db>_before_<run>`), and what can be done with them:
 * `restore --list-kept`, `restore --rollback [--kept RUN]`, `restore --prune-kept
 * --older-than-days N`. They are found by name on the appliance: nothing else records them.
 */
export interface KeptOptions {
  readonly config: Config;
  readonly target: TargetConfig;
  readonly executor: Executor;
  readonly logger: Logger;
  readonly signal?: AbortSignal | undefined;
}

export interface ApplianceDatabase {
  readonly artifact: string;
  readonly server: AppliancePostgres;
  readonly database: string;
}

export interface KeptEntry {
  readonly artifact: string;
  readonly database: string;
  readonly kept: string;
  readonly run: string;
  /** When the restore that kept it ran (from the name). */
  readonly at: string;
}

/** The databases of the target's profile that restore swaps (those with a name on the appliance). */
export async function applianceDatabases(options: KeptOptions): Promise<ApplianceDatabase[]> {
  const { target, executor, signal } = options;
  const out: ApplianceDatabase[] = [];
  for (const dump of target.boundProfile.dumps) {
    if (!dump.database) continue;
    const server = new AppliancePostgres({ executor, spec: dump.database, timeoutMs: target.timeouts.serviceSeconds * 1000, loadTimeoutMs: target.timeouts.restoreSeconds * 1000, signal });
    const name = await server.resolveName();
    if (name === '') continue;
    out.push({ artifact: dump.name, server, database: checkDatabaseName(name, `${target.name}: the ${dump.name} database`) });
  }
  return out;
}

export async function listKept(options: KeptOptions, databases?: readonly ApplianceDatabase[]): Promise<KeptEntry[]> {
  const entries: KeptEntry[] = [];
  for (const d of databases ?? (await applianceDatabases(options))) {
    for (const name of await d.server.databases()) {
      const run = parseDerivedName(d.database, 'before', name);
      const at = run === null ? null : runIdTime(run);
      if (run !== null && at !== null) entries.push({ artifact: d.artifact, database: d.database, kept: name, run, at: at.toISOString() });
    }
  }
  return entries.sort((a, b) => b.run.localeCompare(a.run) || a.artifact.localeCompare(b.artifact));
}

export interface RollbackOutcome {
  readonly target: string;
  /** The run whose kept databases are back in place. */
  readonly from: string;
  /** This rollback's run id: the databases it replaced are kept as `<db>_before_<run>`. */
  readonly run: string;
  readonly swapped: { artifact: string; database: string; restoredFrom: string; keptAs: string }[];
  readonly downtimeMs: number;
}

/**
 * Swaps the databases a restore kept back in (the newest set, or `run`): target lock, fleet
 * lease, services stopped, one-transaction rename, services started and confirmed. The databases
 * it replaces are kept in turn (`<db>_before_<now>`): a rollback can itself be rolled back.
 */
export async function rollbackRestore(options: KeptOptions & { readonly redis: Redis; readonly run?: string | undefined; readonly holderId?: string }): Promise<RollbackOutcome> {
  const { config, target, executor, signal } = options;
  const logger = options.logger.child({ target: target.name, purpose: 'restore' });
  const holder = options.holderId ?? holderIdentity('rollback');
  const databases = await applianceDatabases(options);
  const kept = await listKept(options, databases);
  const chosen = options.run ?? kept[0]?.run;
  const set = kept.filter((k) => k.run === chosen);
  if (chosen === undefined || set.length === 0) {
    const runs = [...new Set(kept.map((k) => k.run))];
    throw new BackupError(
      'ROLLBACK_NOTHING_KEPT',
      options.run !== undefined
        ? `--kept ${options.run}: ${target.name} has no databases kept by that restore; it has ${runs.length > 0 ? runs.join(', ') : 'none'} (restore --list-kept)`
        : `${target.name} has no databases kept by an earlier restore; nothing to roll back to`,
      { permanent: true, details: { runs } },
    );
  }
  const run = restoreRunId(new Date());
  const pairs = set.map((k) => {
    const d = databases.find((x) => x.artifact === k.artifact);
    if (!d) throw new Error(`unreachable: ${k.artifact} has no database`);
    return { artifact: k.artifact, server: d.server, database: d.database, incoming: k.kept, keepAs: derivedName(d.database, 'before', run) };
  });

  const lock = await acquireTargetLock(options.redis, { prefix: config.redis.prefix, target: target.name, holder, ttlMs: targetLockTtlMs(config), logger, purpose: 'restore' });
  try {
    const { window } = await withQuiescedAppliance(
      { lease: fleetLeaseFor(config, options.redis, { holderId: holder, logger }), target, executor, logger, signal, waitMs: config.quiesce.waitSeconds * 1000 },
      async ({ guard }) => {
        await guard.assertHeld('rollback swap');
        await swapDatabases(pairs, logger);
      },
    );
    logger.info({ from: chosen, run }, 'rolled back to the databases kept by an earlier restore');
    return {
      target: target.name,
      from: chosen,
      run,
      swapped: pairs.map((p) => ({ artifact: p.artifact, database: p.database, restoredFrom: p.incoming, keptAs: p.keepAs })),
      downtimeMs: window?.ms ?? 0,
    };
  } finally {
    await lock.release().catch((err: unknown) => logger.warn({ err }, 'releasing the target lock failed; it expires on its own'));
  }
}

export interface PruneKeptOutcome {
  readonly target: string;
  readonly dropped: KeptEntry[];
  readonly remaining: KeptEntry[];
  readonly dryRun: boolean;
}

/**
 * Drops kept databases whose restore ran more than `olderThanDays` days ago (0 = all), under the
 * target lock (no restore or rollback renames them meanwhile). Services are not touched.
 */
export async function pruneKept(options: KeptOptions & { readonly redis: Redis; readonly olderThanDays: number; readonly dryRun?: boolean; readonly now?: Date; readonly holderId?: string }): Promise<PruneKeptOutcome> {
  const { config, target } = options;
  const logger = options.logger.child({ target: target.name, purpose: 'prune-kept' });
  const cutoff = (options.now ?? new Date()).getTime() - options.olderThanDays * 86_400_000;
  const lock = await acquireTargetLock(options.redis, { prefix: config.redis.prefix, target: target.name, holder: options.holderId ?? holderIdentity('prune-kept'), ttlMs: targetLockTtlMs(config), logger, purpose: 'restore' });
  try {
    const databases = await applianceDatabases(options);
    const kept = await listKept(options, databases);
    const dropped: KeptEntry[] = [];
    const remaining: KeptEntry[] = [];
    for (const k of kept) {
      if (Date.parse(k.at) > cutoff) {
        remaining.push(k);
        continue;
      }
      if (!options.dryRun) {
        const d = databases.find((x) => x.artifact === k.artifact);
        await d?.server.dropDatabase(k.kept);
        logger.info({ database: k.kept, at: k.at }, 'dropped a kept database');
      }
      dropped.push(k);
    }
    return { target: target.name, dropped, remaining, dryRun: options.dryRun ?? false };
  } finally {
    await lock.release().catch((err: unknown) => logger.warn({ err }, 'releasing the target lock failed; it expires on its own'));
  }
}
