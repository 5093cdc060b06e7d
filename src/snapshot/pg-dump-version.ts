/**
 * The version of an appliance's own pg_dump, from `pg_dump --version`: "pg_dump (PostgreSQL)
 * 9.6.24", or a VMware build's "pg_dump (PostgreSQL) 9.4.26 (VMware Postgres 9.4.26.0-… release)".
 * From 10 on a version is MAJOR.MINOR; before that MAJOR.MINOR.PATCH with a two-part major.
 */
export interface PgDumpVersion {
  readonly major: number;
  readonly minor: number;
  /** As printed, e.g. "9.4.26". */
  readonly text: string;
}

const versionLine = /\bpg_dump \((?:PostgreSQL|[^)]*Postgres[^)]*)\) (\d+)(?:\.(\d+))?(?:\.\d+)?\S*/;

export function parsePgDumpVersion(output: string): PgDumpVersion | undefined {
  const match = versionLine.exec(output);
  if (!match) return undefined;
  const major = Number(match[1]);
  const minor = Number(match[2] ?? '0');
  return { major, minor, text: match[0].replace(/^pg_dump \([^)]*\) /, '') };
}

/** `pg_dump --snapshot` came with PostgreSQL 9.5 (pg_export_snapshot itself with 9.2). */
export function supportsSnapshot(version: PgDumpVersion): boolean {
  return version.major > 9 || (version.major === 9 && version.minor >= 5);
}
