import { createReadStream } from 'node:fs';
import { BackupError, combineErrors, errorMessage } from '../errors.ts';
import type { Executor } from '../executors/executor.ts';
import type { Logger } from '../log.ts';
import type { DumpSpec } from '../profiles/profile.ts';
import { shellQuote } from '../profiles/render.ts';
import { AppliancePostgres, freeSpace, maintenanceDatabase, type FreeSpace } from './appliance-postgres.ts';
import { runChecks, type CheckResult, type ConsistencyCheck } from './consistency.ts';
import { checkDatabaseName, derivedName, parseDerivedName } from './database-names.ts';
import { createDatabaseSql, readDatabaseSettings, roleSettingsSql, type DatabaseSettings } from './database-settings.ts';
import type { FetchedArtifact } from './fetch-artifacts.ts';
import { parseTableStats, tableStatsSql, type TableStats } from './scratch-db.ts';
import { ScratchSqlFilter } from './scratch-sql.ts';
import { formatBytes } from '../format.ts';

/**
 * A loaded database takes up to this many times its dump's raw size on disk (tables, their
 * indexes, and the WAL written while loading). The free-space check asks for that much.
 */
export const defaultSpaceFactor = 2;

export interface StageItem {
  readonly artifactName: string;
  readonly dump: DumpSpec;
  readonly file: FetchedArtifact;
}

export interface StagedDatabase {
  readonly artifactName: string;
  readonly server: AppliancePostgres;
  /** The appliance's database (e.g. VCDB). */
  readonly database: string;
  /** `<db>_restore_<run>`: the backup, loaded and checked. */
  readonly staged: string;
  /** `<db>_before_<run>`: what the current database becomes at the swap. */
  readonly keepAs: string;
  readonly settings: DatabaseSettings;
  readonly tables: TableStats[];
  readonly rows: number;
}

export interface StageInput {
  readonly executor: Executor;
  readonly targetName: string;
  readonly items: readonly StageItem[];
  /** Run id shared by every database of this restore (database-names.ts). */
  readonly run: string;
  readonly checks: readonly ConsistencyCheck[];
  /** Scratch directory on the appliance for the copy of one dump at a time. */
  readonly applianceTmp: string;
  readonly timeoutMs: number;
  readonly loadTimeoutMs: number;
  readonly spaceFactor?: number;
  readonly logger: Logger;
  readonly signal?: AbortSignal | undefined;
  readonly onLoad?: (artifact: string) => void;
}

export interface Staged {
  readonly databases: StagedDatabase[];
  /** Dumps without a database on the appliance: restored in place, with the services stopped. */
  readonly inPlace: StageItem[];
  readonly checks: CheckResult[];
  /** Drops the staged databases (the undo of staging; not needed once swapped). */
  drop(): Promise<void>;
}

interface Resolved {
  readonly item: StageItem;
  readonly server: AppliancePostgres;
  readonly database: string;
  readonly settings: DatabaseSettings;
}

/**
 * Loads each dump into a new database beside the appliance's own, while the services still run
 * (only the swap needs them stopped, so the downtime does not grow with the database):
 *   resolve each database's name and settings → drop leftovers of an interrupted restore →
 *   check free space → per dump: CREATE DATABASE `<db>_restore_<run>` with the original's owner,
 *   encoding, collation, privileges → copy the dump onto the appliance → load it in one
 *   transaction (owners and grants as dumped) → remove the copy → count every table's rows
 *   (plain SQL: exactly the rows the dump holds) → the profile's consistency checks across the
 *   new databases → the original's per-database settings.
 * Any failure drops every database made here: a failed load changes nothing and leaves none.
 */
export async function stageDatabases(input: StageInput): Promise<Staged> {
  const { executor, logger, signal } = input;
  const resolved: Resolved[] = [];
  const inPlace: StageItem[] = [];
  for (const item of input.items) {
    const spec = item.dump.database;
    if (!spec) {
      inPlace.push(item);
      continue;
    }
    const server = new AppliancePostgres({ executor, spec, timeoutMs: input.timeoutMs, loadTimeoutMs: input.loadTimeoutMs, signal });
    const name = await server.resolveName();
    if (name === '') {
      inPlace.push(item);
      continue;
    }
    const database = checkDatabaseName(name, `${input.targetName}: the ${item.artifactName} database`);
    const settings = await readDatabaseSettings(server, database);
    if (!settings) {
      throw new BackupError('RESTORE_DATABASE_MISSING', `${input.targetName}: the ${item.artifactName} database ${database} does not exist on the appliance; check the profile's variables for this target. Nothing was changed.`, { permanent: true });
    }
    resolved.push({ item, server, database, settings });
  }

  await dropLeftovers(resolved, logger);
  if (resolved.length > 0) await checkFreeSpace(input, resolved);

  const made: { server: AppliancePostgres; name: string }[] = [];
  const drop = async (): Promise<void> => {
    const problems: unknown[] = [];
    for (const m of made.slice().reverse()) {
      // Cleanup after a cancellation too: not cancelled by the signal.
      await m.server.uncancellable().dropDatabase(m.name).catch((err: unknown) => problems.push(err));
    }
    if (problems.length > 0) {
      throw new BackupError('RESTORE_CLEANUP_FAILED', `could not drop ${made.map((m) => m.name).join(', ')} on the appliance: ${problems.map(errorMessage).join('; ')}; drop them by hand`);
    }
  };
  try {
    const databases: StagedDatabase[] = [];
    for (const r of resolved) {
      signal?.throwIfAborted();
      const staged = derivedName(r.database, 'restore', input.run);
      input.onLoad?.(r.item.artifactName);
      await r.server.query(maintenanceDatabase, createDatabaseSql(staged, r.settings));
      made.push({ server: r.server, name: staged });
      const copied = await loadInto(input, r, staged);
      const tables = parseTableStats(await r.server.query(staged, tableStatsSql));
      checkRows(r, staged, tables, copied);
      databases.push({ artifactName: r.item.artifactName, server: r.server, database: r.database, staged, keepAs: derivedName(r.database, 'before', input.run), settings: r.settings, tables, rows: tables.reduce((s, t) => s + t.rows, 0) });
      logger.info({ artifact: r.item.artifactName, database: staged, tables: tables.length }, 'backup loaded into a new database beside the current one');
    }

    const serverOf = new Map(databases.map((d) => [d.staged, d.server] as const));
    const checks = await runChecks(
      async (db, sql) => {
        const server = serverOf.get(db);
        if (!server) throw new Error(`unreachable: ${db} was not staged`);
        return server.value(db, sql);
      },
      input.checks,
      new Map(databases.map((d) => [d.artifactName, d.staged] as const)),
    );
    const failed = checks.filter((c) => c.status === 'fail');
    if (failed.length > 0) {
      throw new BackupError('RESTORE_CHECK_FAILED', `the loaded backup fails its consistency checks: ${failed.map((c) => `${c.name}: ${c.message}`).join('; ')}. Nothing was changed on the appliance.`, { permanent: true });
    }
    for (const d of databases) {
      const settings = roleSettingsSql(d.staged, d.settings);
      if (settings) await d.server.query(maintenanceDatabase, settings);
    }
    return { databases, inPlace, checks, drop };
  } catch (err) {
    try {
      await drop();
    } catch (cleanupErr) {
      throw combineErrors(err, [cleanupErr]);
    }
    throw err;
  }
}

/** Copies one dump onto the appliance, loads it into `staged`, always removes the copy; returns COPY row counts (plain SQL). */
async function loadInto(input: StageInput, r: Resolved, staged: string): Promise<ReadonlyMap<string, number> | null> {
  const { executor, signal } = input;
  const remote = `${input.applianceTmp}/vcsa-restore-${input.run}-${r.item.dump.file}`;
  const plain = r.item.file.artifact.format !== 'pg-custom';
  const filter = plain ? new ScratchSqlFilter({ ownership: 'keep' }) : null;
  const source = createReadStream(r.item.file.path);
  try {
    await executor.run(`mkdir -p ${shellQuote(input.applianceTmp)} && umask 077 && cat > ${shellQuote(remote)}`, {
      stdin: filter ? source.pipe(filter) : source,
      timeoutMs: input.loadTimeoutMs,
      ...(signal ? { signal } : {}),
    });
    if (plain) await r.server.loadPlainSql(staged, remote);
    else await r.server.loadArchive(staged, remote);
  } catch (err) {
    throw new BackupError('RESTORE_LOAD_FAILED', `loading ${r.item.artifactName} into the new database ${staged} failed: ${errorMessage(err)}. Nothing was changed on the appliance.`, { cause: err });
  } finally {
    source.destroy();
    // The dump holds the whole database: never leave it in the appliance's scratch space.
    await executor.run(`rm -f ${shellQuote(remote)}`, { timeoutMs: input.timeoutMs }).catch((err: unknown) => input.logger.warn({ err, remote }, 'could not remove the copied dump from the appliance'));
  }
  return filter ? filter.copiedRows : null;
}

function checkRows(r: Resolved, staged: string, tables: readonly TableStats[], copied: ReadonlyMap<string, number> | null): void {
  if (tables.length === 0) {
    throw new BackupError('RESTORE_CHECK_FAILED', `the ${r.item.artifactName} dump loaded into ${staged} but holds no tables; refusing to swap an empty database in. Nothing was changed on the appliance.`, { permanent: true });
  }
  if (!copied) return;
  const counted = new Map(tables.map((t) => [t.name, t.rows] as const));
  const wrong = [...copied].filter(([table, rows]) => counted.get(table) !== rows).map(([table, rows]) => `${table}: ${rows} rows in the dump, ${counted.get(table) ?? 'no table'} loaded`);
  if (wrong.length > 0) {
    throw new BackupError('RESTORE_CHECK_FAILED', `the ${r.item.artifactName} dump did not load completely into ${staged}: ${wrong.slice(0, 5).join('; ')}. Nothing was changed on the appliance.`, { permanent: true });
  }
}

/** Under the target lock no other restore runs: `<db>_restore_<run>` of another run is debris of a crash. */
async function dropLeftovers(resolved: readonly Resolved[], logger: Logger): Promise<void> {
  for (const r of resolved) {
    for (const name of await r.server.databases()) {
      if (parseDerivedName(r.database, 'restore', name) === null) continue;
      logger.warn({ database: name }, 'dropping a database left by an interrupted restore');
      await r.server.dropDatabase(name);
    }
  }
}

/**
 * Before anything is created: the file system of the server's data directory must hold every
 * new database (factor × the dumps' raw size), and the appliance's scratch directory one copy of
 * the largest dump; if both are one file system, the sum.
 */
async function checkFreeSpace(input: StageInput, resolved: readonly Resolved[]): Promise<void> {
  const factor = input.spaceFactor ?? defaultSpaceFactor;
  const opts = { timeoutMs: input.timeoutMs, signal: input.signal };
  const needs = new Map<string, { fs: FreeSpace; bytes: number; why: string[] }>();
  const add = (fs: FreeSpace, bytes: number, why: string): void => {
    const entry = needs.get(fs.mount) ?? { fs, bytes: 0, why: [] };
    entry.bytes += bytes;
    entry.why.push(why);
    needs.set(fs.mount, entry);
  };
  for (const r of resolved) {
    const dataDir = await r.server.dataDirectory();
    const raw = r.item.file.rawBytes;
    let fs: FreeSpace;
    try {
      fs = await freeSpace(input.executor, dataDir, opts);
    } catch (err) {
      // The server's data directory is not on the machine the commands run on (a database server
      // elsewhere, or a container without it): its free space cannot be seen from here.
      input.logger.warn({ err, dataDir }, 'cannot check the free space of the database server\'s data directory from the appliance; loading without that check');
      continue;
    }
    add(fs, Math.ceil(raw * factor), `${formatBytes(raw * factor)} for the ${r.item.artifactName} database (${factor} × its ${formatBytes(raw)} dump) in ${dataDir}`);
  }
  const largest = Math.max(...input.items.map((i) => i.file.rawBytes));
  await input.executor.run(`mkdir -p ${shellQuote(input.applianceTmp)}`, { timeoutMs: input.timeoutMs });
  add(await freeSpace(input.executor, input.applianceTmp, opts), largest, `${formatBytes(largest)} for the copy of a dump in ${input.applianceTmp}`);
  const short = [...needs.values()].filter((n) => n.bytes > n.fs.freeBytes);
  if (short.length > 0) {
    throw new BackupError(
      'RESTORE_NO_SPACE',
      `${input.targetName}: not enough free space on the appliance: ` +
        short.map((n) => `${n.fs.mount} has ${formatBytes(n.fs.freeBytes)} free, the restore needs ${formatBytes(n.bytes)} (${n.why.join(' + ')}); free ${formatBytes(n.bytes - n.fs.freeBytes)} more`).join('; ') +
        '. Or point APPLIANCE_TMP at another file system. Nothing was stopped or changed.',
      { permanent: true, details: { needs: short.map((n) => ({ mount: n.fs.mount, freeBytes: n.fs.freeBytes, neededBytes: n.bytes })) } },
    );
  }
}
