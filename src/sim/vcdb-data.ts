import { fileURLToPath } from 'node:url';
import { BackupError } from '../errors.ts';
import { defaultPgBin, runPgTool } from './postgres.ts';

/** The SQL that grows a VCDB; the appliance image runs the same file (VCSA_SIM_VCDB_MB). */
export const vcdbDataScript = fileURLToPath(new URL('./scripts/vcdb-data.sql', import.meta.url));

/** Largest --vcdb-mb the simulator accepts: 64 GiB, past the biggest real VCDBs. */
export const maxVcdbMb = 64 * 1024;

/**
 * Grows the VCDB at `adminUrl` (a superuser connection to that database) to about `mb` MiB
 * (pg_database_size) of vCenter-shaped rows owned by `owner`: statistics (vpx_hist_stat1..4,
 * most of it), events with their arguments, and tasks, with values that vary like real ones.
 * Rows are made by the server (INSERT … SELECT generate_series), so no data crosses the wire.
 * Run it before vpxd starts: events continue vpxd's sequence. Returns the database's size.
 * A plain-SQL dump is about a third of the database's size (tuple headers and indexes are not
 * dumped), and gzip -6 shrinks that dump 5–7×.
 */
export async function fillVcdb(adminUrl: string, options: { mb: number; owner: string; pgBin?: string }): Promise<number> {
  const { mb, owner } = options;
  if (!Number.isInteger(mb) || mb < 0 || mb > maxVcdbMb) {
    throw new BackupError('SIM_BAD_VCDB_SIZE', `vcdb-mb: expected a whole number of MiB from 0 to ${maxVcdbMb}, got ${mb}`, { permanent: true });
  }
  const bin = `${options.pgBin ?? defaultPgBin}/psql`;
  const args = ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-v', `target_mb=${mb}`, '-v', `owner=${owner}`, '-d', adminUrl, '-f', vcdbDataScript];
  const { code, stdout, stderr } = await runPgTool(bin, args, '', 'SIM_PSQL_FAILED');
  if (code !== 0) {
    throw new BackupError('SIM_VCDB_FILL_FAILED', `filling the VCDB with ${mb} MiB of data failed (psql exit ${String(code)}): ${stderr.toString('utf8').trim().slice(-2000) || 'no error output'}`);
  }
  const size = Number(stdout.toString('utf8').trim().split('\n').pop());
  return Number.isFinite(size) ? size : 0;
}
