import type { Redis } from 'ioredis';
import { findBackup, type CatalogEntry } from '../catalog/catalog.ts';
import type { Config } from '../config/load.ts';
import type { ManifestArtifact } from '../backup/manifest.ts';
import { decryptionKeys } from '../crypto/key-ring.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import { FleetState } from '../state/fleet-state.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { checksFor, runChecks, type CheckResult, type ConsistencyCheck } from './consistency.ts';
import { fetchArtifacts, type FetchedArtifact, type FetchProgress } from './fetch-artifacts.ts';
import { createScratchDatabase, defaultPgBinDir, loadCustomArchive, loadPlainSql, parseScratchUrl, scratchQuery, tableStats, type ScratchDatabase, type TableStats } from './scratch-db.ts';
import { createWorkDir } from './work-dir.ts';
import { hasCode } from '../error-codes.ts';
import { verifyNativeBackup, type NativeVerifyResult } from '../native/verify-native.ts';

export interface VerifyInput {
  readonly config: Config;
  /** Target whose backup is verified. Only its name is needed: verify never touches the appliance. */
  readonly target: string;
  /** A backup id, 'latest' (default), or an entry already found. */
  readonly backup?: string | CatalogEntry;
  readonly store: ObjectStore;
  readonly logger: Logger;
  /** When given, the result is recorded as `lastVerify` in the target's fleet state hash. */
  readonly redis?: Redis;
  readonly signal?: AbortSignal;
  /** Where dumps are downloaded; default config.spool.dir. */
  readonly workRoot?: string;
  /** Keep the scratch databases (for a look by hand); default false. */
  readonly keepDatabases?: boolean;
  /** Download bytes, then each database load, then the checks: for progress on a terminal. */
  readonly onProgress?: (event: { step: 'download' | 'load' | 'check'; artifact?: string; bytes?: number; totalBytes?: number }) => void;
}

export interface VerifiedDatabase {
  readonly name: string;
  readonly format: ManifestArtifact['format'];
  readonly rawBytes: number;
  readonly loaded: boolean;
  readonly loadMs: number;
  /** Scratch database it was loaded into (dropped afterwards unless keepDatabases). */
  readonly scratchDatabase: string | null;
  readonly dropped: boolean;
  readonly tables: TableStats[];
  readonly rows: number;
  readonly bytes: number;
  readonly error: string | null;
}

export interface VerifyReport {
  readonly target: string;
  readonly id: string;
  readonly manifestKey: string;
  readonly profile: string;
  /** When this verification ran. */
  readonly at: string;
  readonly ok: boolean;
  /** One line: what passed, or the first problems. */
  readonly message: string;
  readonly checksums: 'ok' | 'mismatch' | 'not checked';
  readonly databases: VerifiedDatabase[];
  readonly checks: CheckResult[];
  readonly problems: string[];
  readonly ms: number;
}

/**
 * A restore drill that never touches an appliance: download the backup, check every object
 * against the manifest, load each dump into a fresh scratch database, count rows, run the
 * profile's consistency checks, drop the scratch databases. Problems with the backup make a
 * report with ok: false (and exit 1 in the CLI); a backup id that does not exist throws
 * BACKUP_NOT_FOUND. The worker calls this after a backup when verify.afterBackup is set.
 *
 * The result is stored in Redis as field `lastVerify` of `<prefix>:target:<name>`:
 * {"id", "at", "ok", "message"} — `status` and the dashboard read it from there.
 */
export async function verifyBackup(input: VerifyInput): Promise<VerifyReport> {
  const { config, target, store, signal } = input;
  const started = Date.now();
  const entry = typeof input.backup === 'object' ? input.backup : await findBackup(store, config.s3.prefix, target, input.backup ?? 'latest', { logger: input.logger });
  const logger = input.logger.child({ target, backupId: entry.id, purpose: 'verify' });
  if (entry.manifest.native) return finishVerify(input, entry, started, logger, await verifyNativeBackup({ config, entry, store, logger, ...(signal ? { signal } : {}), ...(input.workRoot ? { workRoot: input.workRoot } : {}) }));
  const server = parseScratchUrl(config.verify.scratchUrl, config.verify.pgBin ?? defaultPgBinDir());
  const problems: string[] = [];
  const databases: VerifiedDatabase[] = [];
  let checks: CheckResult[] = [];
  let checksums: VerifyReport['checksums'] = 'not checked';

  const work = await createWorkDir(input.workRoot ?? config.spool.dir, 'verify');
  const scratch: ScratchDatabase[] = [];
  const dropped = new Set<string>();
  try {
    let fetched: FetchedArtifact[] = [];
    try {
      const emit = input.onProgress;
      fetched = await fetchArtifacts(store, entry.manifest, work.dir, {
        ...(signal ? { signal } : {}),
        keys: decryptionKeys(config.encryption),
        ...(emit ? { onProgress: (p: FetchProgress) => emit({ step: 'download', artifact: p.artifact, bytes: p.bytes, totalBytes: p.totalBytes }) } : {}),
      });
      checksums = 'ok';
    } catch (err) {
      if (signal?.aborted) throw err;
      checksums = hasCode(err, 'RESTORE_CHECKSUM_MISMATCH') ? 'mismatch' : 'not checked';
      problems.push(errorMessage(err));
    }

    const loaded = new Map<string, string>();
    for (const file of fetched) {
      const a = file.artifact;
      const loadStarted = Date.now();
      input.onProgress?.({ step: 'load', artifact: a.name });
      let db: ScratchDatabase | null = null;
      try {
        db = await createScratchDatabase(server, a.name);
        scratch.push(db);
        if (a.format === 'pg-custom') await loadCustomArchive(server, db.name, file.path, signal);
        else await loadPlainSql(server, db.name, file.path, signal);
        const tables = await tableStats(server, db.name, signal);
        loaded.set(a.name, db.name);
        databases.push({
          name: a.name,
          format: a.format,
          rawBytes: file.rawBytes,
          loaded: true,
          loadMs: Date.now() - loadStarted,
          scratchDatabase: db.name,
          dropped: false,
          tables,
          rows: tables.reduce((s, t) => s + t.rows, 0),
          bytes: tables.reduce((s, t) => s + t.bytes, 0),
          error: null,
        });
        if (tables.length === 0) problems.push(`${a.name}: loaded, but contains no tables`);
        logger.info({ artifact: a.name, tables: tables.length, ms: Date.now() - loadStarted }, 'dump loads into a scratch database');
      } catch (err) {
        if (signal?.aborted) throw err;
        if (hasCode(err, 'VERIFY_SCRATCH_UNAVAILABLE', 'VERIFY_PG_CLIENT')) throw err;
        const message = errorMessage(err);
        problems.push(`${a.name}: does not load: ${message}`);
        databases.push({ name: a.name, format: a.format, rawBytes: file.rawBytes, loaded: false, loadMs: Date.now() - loadStarted, scratchDatabase: db?.name ?? null, dropped: false, tables: [], rows: 0, bytes: 0, error: message });
      }
    }

    if (fetched.length > 0 && loaded.size === fetched.length) {
      input.onProgress?.({ step: 'check' });
      const configured = config.verify.checks as readonly (ConsistencyCheck & { profile: string })[] | undefined;
      checks = await runChecks((db, sql) => scratchQuery(server, db, sql, signal), checksFor(entry.manifest.profile, configured), loaded);
      for (const c of checks) if (c.status === 'fail') problems.push(`${c.name}: ${c.message}`);
    }
  } catch (err) {
    if (signal?.aborted) throw err;
    // The drill could not run (scratch server unreachable, client missing): that is a failed
    // verification too, recorded as such, but the error says it is not the backup's fault.
    problems.push(errorMessage(err));
  } finally {
    if (!input.keepDatabases) {
      for (const db of scratch) {
        await db.drop().then(
          () => dropped.add(db.name),
          (err: unknown) => logger.warn({ err, database: db.name }, 'could not drop a scratch database; drop it by hand'),
        );
      }
    }
    await work.remove();
  }

  const ok = problems.length === 0;
  const applied = checks.filter((c) => c.status !== 'skipped');
  const message = ok
    ? `${databases.length} database(s) load (${databases.map((d) => `${d.name}: ${d.tables.length} tables, ${d.rows} rows`).join('; ')}); ` +
      (applied.length > 0 ? `${applied.length} consistency check(s) pass` : `no consistency checks apply to profile ${entry.manifest.profile}`)
    : problems.join('; ');
  return finishReport(input, entry, started, logger, {
    ok,
    message,
    checksums,
    databases: databases.map((d) => ({ ...d, dropped: d.scratchDatabase !== null && dropped.has(d.scratchDatabase) })),
    checks,
    problems,
  });
}

/** A vcsa-native backup's report: checksums and the archive's own metadata, no database loads. */
async function finishVerify(input: VerifyInput, entry: CatalogEntry, started: number, logger: Logger, result: NativeVerifyResult): Promise<VerifyReport> {
  const ok = result.problems.length === 0;
  const passed = result.checks.filter((c) => c.status === 'pass').length;
  const message = ok ? `checksums ok; ${passed} archive metadata check(s) pass` : result.problems.join('; ');
  return finishReport(input, entry, started, logger, { ok, message, checksums: result.checksums, databases: [], checks: result.checks, problems: result.problems });
}

/** The report of one verification: logged, and recorded in the fleet state when Redis is given. */
async function finishReport(
  input: VerifyInput,
  entry: CatalogEntry,
  started: number,
  logger: Logger,
  outcome: Pick<VerifyReport, 'ok' | 'message' | 'checksums' | 'databases' | 'checks' | 'problems'>,
): Promise<VerifyReport> {
  const report: VerifyReport = {
    target: input.target,
    id: entry.id,
    manifestKey: entry.manifestKey,
    profile: entry.manifest.profile,
    at: new Date().toISOString(),
    ...outcome,
    ms: Date.now() - started,
  };
  if (report.ok) logger.info({ ms: report.ms }, `backup verified: ${report.message}`);
  else logger.error({ problems: report.problems }, 'backup verification failed');
  if (input.redis) {
    await new FleetState(input.redis, input.config.redis.prefix)
      .recordVerify(input.target, { id: entry.id, at: report.at, ok: report.ok, message: report.message.slice(0, 2000) })
      .catch((err: unknown) => logger.warn({ err }, 'could not record the verification result in Redis'));
  }
  return report;
}
