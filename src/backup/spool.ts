import { access, mkdir, readdir, readFile, rm, statfs, writeFile, rename } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { BackupError } from '../errors.ts';
import type { NativeBackupInfo } from '../native/backup-info.ts';

/**
 * The spool holds a backup's dumps between the quiesce step and a verified upload, so a failed
 * upload is retried from here without stopping the appliance again. One directory per backup:
 * <spool.dir>/<target>/<backup id>/. `spool.json` is written once every dump is complete: a
 * directory without it is debris of an interrupted dump and is never uploaded.
 */
export interface SpoolArtifact {
  readonly name: string;
  /** Raw dump file name inside the spool directory ("postgres.sql"). */
  readonly file: string;
  readonly format: 'plain-sql' | 'pg-custom' | 'vcsa-native';
  readonly rawBytes: number;
  /**
   * sha256 of the raw dump, when it was taken while dumping. The dump step leaves it out so
   * that nothing but writing happens while the services are down: the compression step hashes
   * the raw file as it reads it (TransformedFile.rawSha256).
   */
  readonly rawSha256?: string;
  readonly dumpMs: number;
}

/**
 * When the services were down, and how the dumps were kept consistent: `snapshot` (down for the
 * stop, the snapshot export and the start; dumped afterwards from the snapshots) or `classic`
 * (down for the whole dump). `reason` says why a backup that could have been `snapshot` was not.
 * Absent `mode`: a backup made before snapshot mode existed (classic).
 */
export interface QuiesceRecord {
  readonly stoppedAt: string;
  readonly startedAt: string;
  readonly ms: number;
  readonly mode?: 'snapshot' | 'classic';
  readonly reason?: string;
}

export interface SpoolRecord {
  readonly version: 1;
  readonly target: string;
  readonly id: string;
  readonly profile: string;
  readonly appliance: string;
  /** The host whose disk holds the spool: an upload can only run there. */
  readonly host: string;
  readonly dir: string;
  readonly createdAt: string;
  readonly quiesce: null | QuiesceRecord;
  readonly artifacts: readonly SpoolArtifact[];
  readonly timings: Readonly<Record<string, number>>;
  /** vcsa-native spools: the appliance's facts, copied into the manifest. */
  readonly native?: NativeBackupInfo;
}

export const spoolRecordFile = 'spool.json';

export function spoolHost(): string {
  return process.env['VCSA_BACKUP_HOST_ID'] ?? hostname();
}

export function spoolDirFor(root: string, target: string, id: string): string {
  return join(root, target, id);
}

/** Removes the spool directories of `target` on this host that `remove` picks; returns their paths. */
async function removeSpoolDirs(root: string, target: string, remove: (dir: string, id: string) => Promise<boolean>): Promise<string[]> {
  const targetDir = join(root, target);
  let entries: string[];
  try {
    entries = await readdir(targetDir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const id of entries) {
    const dir = join(targetDir, id);
    if (!(await remove(dir, id))) continue;
    await rm(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

/**
 * Removes this target's spool directories that never got a spool.json: dumps interrupted by a
 * crash. Only called under the target lock, so no dump of this target is running on this host.
 * Complete spools (with spool.json) are left alone: they hold a backup not yet uploaded.
 */
export function removeSpoolDebris(root: string, target: string): Promise<string[]> {
  return removeSpoolDirs(root, target, (dir) =>
    access(join(dir, spoolRecordFile)).then(
      () => false,
      () => true,
    ),
  );
}

/**
 * After a backup of `target` committed: removes this host's older complete spools of that target,
 * left by backups that failed for good. They were kept in case someone retried them (nothing is
 * deleted before it is safely in S3); a newer good backup now supersedes them. Call under the
 * target lock.
 */
export function removeSupersededSpools(root: string, target: string, newerThanId: string): Promise<string[]> {
  // Backup ids sort as text in time order.
  return removeSpoolDirs(root, target, (_dir, id) => Promise.resolve(id < newerThanId));
}

/** Creates the backup's spool directory after checking there is room. Returns its undo. */
export async function createSpoolDir(root: string, target: string, id: string, minFreeMiB: number): Promise<{ dir: string; remove: () => Promise<void> }> {
  await removeSpoolDebris(root, target);
  const dir = spoolDirFor(root, target, id);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new BackupError('SPOOL_UNWRITABLE', `cannot create spool directory ${dir} (${(err as NodeJS.ErrnoException).code ?? 'error'}); set spool.dir to a writable directory`, { permanent: true, cause: err });
  }
  const fs = await statfs(dir);
  const freeMiB = (fs.bavail * fs.bsize) / (1024 * 1024);
  if (freeMiB < minFreeMiB) {
    await rm(dir, { recursive: true, force: true });
    throw new BackupError('SPOOL_FULL', `only ${Math.floor(freeMiB)} MiB free in ${root} (spool.minFreeMiB is ${minFreeMiB}); free space or point spool.dir elsewhere. No service was stopped.`);
  }
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export async function writeSpoolRecord(record: SpoolRecord): Promise<void> {
  const tmp = join(record.dir, `${spoolRecordFile}.tmp`);
  await writeFile(tmp, JSON.stringify(record, null, 2));
  await rename(tmp, join(record.dir, spoolRecordFile));
}

/** Reads a spool, or throws SPOOL_LOST (the host died, or someone cleaned the directory). */
export async function readSpoolRecord(dir: string): Promise<SpoolRecord> {
  try {
    return JSON.parse(await readFile(join(dir, spoolRecordFile), 'utf8')) as SpoolRecord;
  } catch (err) {
    throw new BackupError('SPOOL_LOST', `the spooled dumps in ${dir} on ${spoolHost()} are gone (${(err as NodeJS.ErrnoException).code ?? 'unreadable'}); the appliance must be dumped again`, { cause: err });
  }
}

export async function removeSpool(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}
