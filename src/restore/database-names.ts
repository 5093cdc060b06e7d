import { createHash } from 'node:crypto';
import { BackupError } from '../errors.ts';

/**
 * Names of the databases a restore creates beside an appliance's database `<db>`:
 *   `<db>_restore_<run>` — the backup being loaded and checked, before the swap;
 *   `<db>_before_<run>`  — the database the swap replaced, kept for `restore --rollback`.
 * `<run>` is the restore's start in UTC, `20261201t234512z`: names sort by time and carry their
 * own age (prune-kept reads it from the name, no bookkeeping anywhere else).
 *
 * PostgreSQL cuts identifiers at 63 bytes (NAMEDATALEN - 1) silently: a long `<db>` is shortened
 * and a hash of the full name added, so two long names never meet in one kept name.
 */
export const maxIdentifierBytes = 63;

/** Names restore will handle: no quoting surprises in SQL or in a shell. */
const plainName = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const runPattern = /^(\d{4})(\d{2})(\d{2})t(\d{2})(\d{2})(\d{2})z$/;

export type DerivedKind = 'restore' | 'before';

/** Checks a database name reported by the appliance; `where` says where it came from. */
export function checkDatabaseName(name: string, where: string): string {
  if (!plainName.test(name) || Buffer.byteLength(name) > maxIdentifierBytes) {
    throw new BackupError(
      'RESTORE_DATABASE_NAME',
      `${where}: database name ${JSON.stringify(name)} is not one restore can swap (use letters, digits, "_", "." or "-", at most ${maxIdentifierBytes} bytes); fix the name or restore that database in place`,
      { permanent: true },
    );
  }
  return name;
}

/** The run id of a restore that starts at `at`. */
export function restoreRunId(at: Date): string {
  const iso = at.toISOString(); // 2026-12-01T23:45:12.345Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}t${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}z`;
}

/** When a run id was made, or null if it is not one. */
export function runIdTime(run: string): Date | null {
  const m = runPattern.exec(run);
  if (!m) return null;
  const [, y, mo, d, h, mi, s] = m;
  const at = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}Z`);
  return Number.isNaN(at.getTime()) ? null : at;
}

/** `<db>` as it appears at the start of its derived names (shortened with a hash when too long). */
function stem(database: string, suffixBytes: number): string {
  if (Buffer.byteLength(database) + suffixBytes <= maxIdentifierBytes) return database;
  const hash = createHash('sha256').update(database).digest('hex').slice(0, 6);
  return `${database.slice(0, maxIdentifierBytes - suffixBytes - hash.length - 1)}_${hash}`;
}

export function derivedName(database: string, kind: DerivedKind, run: string): string {
  const suffix = `_${kind}_${run}`;
  return `${stem(database, Buffer.byteLength(suffix))}${suffix}`;
}

/** The run id when `candidate` is one of `database`'s derived names of that kind, else null. */
export function parseDerivedName(database: string, kind: DerivedKind, candidate: string): string | null {
  const at = candidate.lastIndexOf(`_${kind}_`);
  if (at < 0) return null;
  const run = candidate.slice(at + kind.length + 2);
  if (runIdTime(run) === null) return null;
  return derivedName(database, kind, run) === candidate ? run : null;
}
