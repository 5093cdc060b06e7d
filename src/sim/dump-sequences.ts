import { BackupError } from '../errors.ts';
import { defaultPgBin, runPgTool } from './postgres.ts';

/**
 * What a simulated appliance's dumps say about its consistency: the newest vpxd event in a
 * VCDB dump and the event the inventory service had mirrored in an inventory dump. A pair
 * taken with the services running disagrees; a quiesced pair agrees.
 */

/** Rows of `COPY public.<table> (...) FROM stdin;` in a plain-SQL dump. */
function copyRows(sql: string | Buffer, table: string): string[][] {
  const lines = (typeof sql === 'string' ? sql : sql.toString('utf8')).split('\n');
  const start = lines.findIndex((l) => l.startsWith(`COPY public.${table} `) && l.endsWith('FROM stdin;'));
  if (start < 0) throw new BackupError('SIM_DUMP_UNEXPECTED', `the dump has no data for table ${table}; is it a dump of a simulated appliance?`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 1)) {
    if (line === '\\.') break;
    rows.push(line.split('\t'));
  }
  return rows;
}

/** The highest vpx_event.seq in a plain-SQL VCDB dump (0 when the table is empty). */
export function vcdbSequenceFromSql(sql: string | Buffer): number {
  return copyRows(sql, 'vpx_event').reduce((max, row) => Math.max(max, Number(row[0])), 0);
}

/** inv_progress.seq in a plain-SQL dump of an inventory database. */
export function inventorySequenceFromSql(sql: string | Buffer): number {
  const row = copyRows(sql, 'inv_progress')[0];
  if (!row || row[1] === undefined) throw new BackupError('SIM_DUMP_UNEXPECTED', 'the inventory dump has no inv_progress row');
  return Number(row[1]);
}

/** inv_progress.seq in a pg_dump custom-format archive (what backup.sh writes). */
export async function inventorySequenceFromArchive(archive: Buffer, pgBin = defaultPgBin): Promise<number> {
  const { code, stdout, stderr } = await runPgTool(`${pgBin}/pg_restore`, ['--data-only', '--table=inv_progress', '-f', '-'], archive, 'SIM_DUMP_UNEXPECTED');
  if (code !== 0) {
    throw new BackupError('SIM_DUMP_UNEXPECTED', `pg_restore could not read the inventory archive: ${stderr.toString('utf8').trim()}`);
  }
  return inventorySequenceFromSql(stdout.toString('utf8'));
}

/** Both sequences of a VCDB dump (plain SQL) and an inventory dump (custom archive). */
export async function dumpPairSequences(vcdbSql: string | Buffer, inventoryArchive: Buffer, pgBin = defaultPgBin): Promise<{ vcdb: number; inventory: number }> {
  return {
    vcdb: vcdbSequenceFromSql(vcdbSql),
    inventory: await inventorySequenceFromArchive(inventoryArchive, pgBin),
  };
}
