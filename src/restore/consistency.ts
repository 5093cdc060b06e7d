import { errorMessage } from '../errors.ts';

/** Runs SQL on one database and returns its output (one value expected). */
export type QueryDatabase = (database: string, sql: string) => Promise<string>;

/**
 * Checks that the databases of one backup belong together, run against the scratch copies.
 * Data, not code: each check has one SQL query per dump (by the dump's name in the profile),
 * and the single values they return must compare as stated. A check whose `requires` tables
 * are missing does not apply to this appliance (e.g. the simulator's tables on a real vCenter)
 * and is skipped with a note. `verify.checks` in fleet.yaml replaces the built-in checks of a
 * profile.
 */
export interface ConsistencyCheck {
  readonly name: string;
  readonly description?: string | undefined;
  /** dump name → a query returning one value. */
  readonly sql: Readonly<Record<string, string>>;
  /** dump name → tables ("schema.table") that must exist for the check to apply. */
  readonly requires?: Readonly<Record<string, readonly string[]>> | undefined;
  readonly compare: 'equal';
}

export interface CheckResult {
  readonly name: string;
  readonly status: 'pass' | 'fail' | 'skipped';
  /** dump name → the value its query returned. */
  readonly values: Record<string, string>;
  readonly message: string;
}

/**
 * The simulated VCSA 5.5 (src/sim): vpxd writes a rising sequence into vpx_event while it
 * runs, and the Inventory Service mirrors the last one it saw into inv_progress. In a pair
 * taken with both services stopped the two agree; in a pair taken while they run they do not.
 */
export const builtinChecks: Readonly<Record<string, readonly ConsistencyCheck[]>> = {
  'vcsa-5.5': [
    {
      name: 'vpxd-sequence',
      description: "vpxd's newest event in the VCDB equals the event the Inventory Service last mirrored",
      sql: {
        vcdb: 'SELECT coalesce(max(seq), 0) FROM public.vpx_event',
        inventory: 'SELECT coalesce(max(seq), 0) FROM public.inv_progress',
      },
      requires: { vcdb: ['public.vpx_event'], inventory: ['public.inv_progress'] },
      compare: 'equal',
    },
  ],
};

export function checksFor(profile: string, configured: readonly (ConsistencyCheck & { readonly profile: string })[] | undefined): readonly ConsistencyCheck[] {
  const own = configured?.filter((c) => c.profile === profile) ?? [];
  return own.length > 0 ? own : (builtinChecks[profile] ?? []);
}

async function tableExists(query: QueryDatabase, database: string, table: string): Promise<boolean> {
  // No to_regclass (9.4+): the checks also run on the appliance's vPostgres 9.0.
  const dot = table.indexOf('.');
  const [schema, name] = dot < 0 ? ['public', table] : [table.slice(0, dot), table.slice(dot + 1)];
  const literal = (t: string): string => `'${t.replace(/'/g, "''")}'`;
  const out = await query(
    database,
    `SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ${literal(schema)} AND c.relname = ${literal(name)}`,
  );
  return out.trim() !== '0';
}

/**
 * Runs the checks; `databases` maps each dump name to its loaded database (verify's scratch
 * copies, or restore's new databases on the appliance).
 */
export async function runChecks(query: QueryDatabase, checks: readonly ConsistencyCheck[], databases: ReadonlyMap<string, string>): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const check of checks) {
    const values: Record<string, string> = {};
    const missingDump = Object.keys(check.sql).find((dump) => !databases.has(dump));
    if (missingDump) {
      results.push({ name: check.name, status: 'skipped', values, message: `not applicable: the backup has no "${missingDump}" dump` });
      continue;
    }
    let missing: string | null = null;
    for (const [dump, tables] of Object.entries(check.requires ?? {})) {
      const db = databases.get(dump);
      if (db === undefined) continue;
      for (const table of tables) {
        if (!(await tableExists(query, db, table))) {
          missing = `${dump}: ${table}`;
          break;
        }
      }
      if (missing) break;
    }
    if (missing) {
      results.push({ name: check.name, status: 'skipped', values, message: `not applicable: ${missing} does not exist` });
      continue;
    }
    try {
      for (const [dump, sql] of Object.entries(check.sql)) {
        const db = databases.get(dump) as string;
        values[dump] = (await query(db, sql)).trim();
      }
    } catch (err) {
      results.push({ name: check.name, status: 'fail', values, message: `query failed: ${errorMessage(err)}` });
      continue;
    }
    const distinct = new Set(Object.values(values));
    const shown = Object.entries(values).map(([dump, v]) => `${dump}=${v}`).join(', ');
    results.push(
      distinct.size <= 1
        ? { name: check.name, status: 'pass', values, message: `consistent: ${shown}` }
        : { name: check.name, status: 'fail', values, message: `inconsistent pair: ${shown}${check.description ? ` (expected: ${check.description})` : ''}; was the backup taken without quiescing?` },
    );
  }
  return results;
}
