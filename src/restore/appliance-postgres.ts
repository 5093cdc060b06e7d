import { Readable } from 'node:stream';
import type { Executor } from '../executors/executor.ts';
import type { DatabaseSpec } from '../profiles/profile.ts';
import { shellQuote } from '../profiles/render.ts';

/**
 * SQL on the appliance's own PostgreSQL server, through its own client tools (a client/server
 * version mismatch is the classic failure of dump tools), run by the target's executor as the
 * profile's superuser. Every query is written to work on vPostgres 9.0 (VCSA 5.5) and later:
 * no format(), to_regclass(), IF EXISTS on ALTER, or pg_stat_activity.pid.
 */
export interface AppliancePostgresOptions {
  readonly executor: Executor;
  readonly spec: DatabaseSpec;
  /** Bound for quick statements (catalog reads, renames). */
  readonly timeoutMs: number;
  /** Bound for loading a dump. */
  readonly loadTimeoutMs: number;
  readonly signal?: AbortSignal | undefined;
}

/** The database every PostgreSQL server has, connected to for CREATE/ALTER/DROP DATABASE. */
export const maintenanceDatabase = 'postgres';

/** Field separator of query output (ASCII unit separator: never in names or settings). */
const fieldSeparator = '\u001f';

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal that means the same with standard_conforming_strings on (15) or off (9.0's default). */
export function quoteLiteral(text: string): string {
  return `E'${text.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

export class AppliancePostgres {
  readonly #options: AppliancePostgresOptions;
  #versionNum: number | null = null;

  constructor(options: AppliancePostgresOptions) {
    this.#options = options;
  }

  /** Same server, same client: databases of one server can be swapped in one transaction. */
  get serverKey(): string {
    return `${this.#options.spec.env}\n${this.#options.spec.psql}`;
  }

  #prefix(): string {
    const env = this.#options.spec.env.trim();
    return env ? `set -e; ${env}; ` : 'set -e; ';
  }

  #run(command: string, options: { stdin?: string; long?: boolean } = {}): Promise<string> {
    const { executor, signal } = this.#options;
    return executor
      .run(`${this.#prefix()}${command}`, {
        timeoutMs: options.long ? this.#options.loadTimeoutMs : this.#options.timeoutMs,
        ...(options.stdin !== undefined ? { stdin: Readable.from([options.stdin]) } : {}),
        ...(signal ? { signal } : {}),
      })
      .then((r) => r.stdout);
  }

  /** The database name the profile points at, as the appliance's shell expands it ('' = none). */
  async resolveName(): Promise<string> {
    return (await this.#run(`printf '%s' ${this.#options.spec.name}`)).trim();
  }

  /** Runs SQL (one or more statements, stopping at the first error) and returns rows of fields. */
  async query(database: string, sql: string): Promise<string[][]> {
    const out = await this.#run(`exec ${this.#options.spec.psql} -X -q -A -t -F "$(printf '\\037')" -v ON_ERROR_STOP=1 -d ${shellQuote(database)} -f -`, { stdin: sql });
    return out
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => line.split(fieldSeparator));
  }

  /** One value from a query (first field of the first row; '' when no row). */
  async value(database: string, sql: string): Promise<string> {
    return (await this.query(database, sql))[0]?.[0] ?? '';
  }

  async versionNum(): Promise<number> {
    this.#versionNum ??= Number(await this.value(maintenanceDatabase, "SELECT current_setting('server_version_num');"));
    return this.#versionNum;
  }

  /** pg_stat_activity's process id column: procpid until 9.2, pid since. */
  async pidColumn(): Promise<string> {
    return (await this.versionNum()) < 90200 ? 'procpid' : 'pid';
  }

  /** Loads a plain-SQL file already on the appliance: one transaction, stop at the first error. */
  async loadPlainSql(database: string, file: string): Promise<void> {
    await this.#run(`exec ${this.#options.spec.psql} -X -q -v ON_ERROR_STOP=1 --single-transaction -d ${shellQuote(database)} -f ${shellQuote(file)}`, { long: true });
  }

  /** Loads a pg_dump custom archive already on the appliance, with owners and privileges. */
  async loadArchive(database: string, file: string): Promise<void> {
    await this.#run(`exec ${this.#options.spec.pgRestore} --exit-on-error --single-transaction -d ${shellQuote(database)} ${shellQuote(file)}`, { long: true });
  }

  /** Names of every database on the server. */
  async databases(): Promise<string[]> {
    return (await this.query(maintenanceDatabase, 'SELECT datname FROM pg_catalog.pg_database ORDER BY 1;')).map((r) => r[0] ?? '');
  }

  /** Ends every session on these databases but ours (the services are stopped; stragglers must go). */
  async terminateSessionsSql(databases: readonly string[]): Promise<string> {
    const pid = await this.pidColumn();
    return `SELECT count(pg_catalog.pg_terminate_backend(${pid})) FROM pg_catalog.pg_stat_activity WHERE datname IN (${databases.map(quoteLiteral).join(', ')}) AND ${pid} <> pg_catalog.pg_backend_pid();`;
  }

  /** Drops a database if it exists, ending its sessions first (vPostgres 9.0 has no WITH (FORCE)). */
  async dropDatabase(database: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.query(maintenanceDatabase, `${await this.terminateSessionsSql([database])}\nDROP DATABASE IF EXISTS ${quoteIdent(database)};`);
        return;
      } catch (err) {
        // A session that was ending (a cancelled load) may still hold it for a moment.
        if (attempt >= 3 || !/being accessed by other users/.test(String((err as Error).message))) throw err;
      }
    }
  }

  /** `df` of the directory holding the server's data: free bytes and the mount point. */
  async dataDirectory(): Promise<string> {
    return this.value(maintenanceDatabase, 'SHOW data_directory;');
  }
}

export interface FreeSpace {
  readonly path: string;
  readonly mount: string;
  readonly freeBytes: number;
}

/** Free space of the file system holding `path` on the appliance (POSIX `df -Pk`). */
export async function freeSpace(executor: Executor, path: string, options: { timeoutMs: number; signal?: AbortSignal | undefined }): Promise<FreeSpace> {
  const out = await executor.run(`df -Pk ${shellQuote(path)} | tail -n 1`, { timeoutMs: options.timeoutMs, ...(options.signal ? { signal: options.signal } : {}) });
  const fields = out.stdout.trim().split(/\s+/);
  const available = Number(fields[3]);
  if (fields.length < 6 || !Number.isFinite(available)) throw new Error(`cannot read the free space of ${path} from df: ${JSON.stringify(out.stdout.trim())}`);
  return { path, mount: fields.slice(5).join(' '), freeBytes: available * 1024 };
}
