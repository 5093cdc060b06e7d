import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BackupError } from '../errors.ts';
import { ScratchSqlFilter } from './scratch-sql.ts';

/**
 * Throwaway databases on a PostgreSQL server for restore drills, driven through the PostgreSQL
 * client binaries (the same tools a real restore uses). The server URL may carry a password;
 * it is handed to the clients in the environment, never on a command line or in a message.
 */
export interface ScratchServer {
  readonly host: string;
  readonly port: string;
  readonly user: string;
  /** Existing database to connect to for CREATE/DROP DATABASE. */
  readonly maintenanceDb: string;
  readonly password?: string;
  /** Directory of psql and pg_restore ('' = $PATH). */
  readonly binDir: string;
  /** "postgres@127.0.0.1:5432", for messages. */
  readonly description: string;
}

/** Debian's PostgreSQL 15 client directory when it exists, else $PATH. */
export function defaultPgBinDir(): string {
  const debian = '/usr/lib/postgresql/15/bin';
  return existsSync(join(debian, 'psql')) ? debian : '';
}

export function parseScratchUrl(url: string, binDir: string = defaultPgBinDir()): ScratchServer {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new BackupError('VERIFY_SCRATCH_URL', 'verify.scratchUrl: not a URL; expected postgres://user[:password]@host:port/database', { permanent: true });
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new BackupError('VERIFY_SCRATCH_URL', `verify.scratchUrl: scheme ${parsed.protocol} is not postgres:; expected postgres://user[:password]@host:port/database`, { permanent: true });
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const port = parsed.port || '5432';
  const user = decodeURIComponent(parsed.username) || 'postgres';
  const password = parsed.password ? decodeURIComponent(parsed.password) : undefined;
  return {
    host,
    port,
    user,
    maintenanceDb: decodeURIComponent(parsed.pathname.slice(1)) || 'postgres',
    ...(password !== undefined ? { password } : {}),
    binDir,
    description: `${user}@${host}:${port}`,
  };
}

function tool(server: ScratchServer, name: 'psql' | 'pg_restore'): string {
  return server.binDir ? join(server.binDir, name) : name;
}

function clientEnv(server: ScratchServer): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PGHOST: server.host, PGPORT: server.port, PGUSER: server.user, PGAPPNAME: 'vcsa-backup-verify', PGCONNECT_TIMEOUT: '10' };
  delete env['PGPASSWORD'];
  delete env['PGDATABASE'];
  if (server.password !== undefined) env['PGPASSWORD'] = server.password;
  return env;
}

function tail(text: string, max = 2000): string {
  const t = text.trim();
  return t.length > max ? `…${t.slice(-max)}` : t;
}

/** Runs a client binary, optionally feeding a stream to stdin; returns stdout. */
async function runClient(
  server: ScratchServer,
  name: 'psql' | 'pg_restore',
  args: readonly string[],
  options: { stdin?: NodeJS.ReadableStream; signal?: AbortSignal; what: string },
): Promise<string> {
  const bin = tool(server, name);
  const child = spawn(bin, args, { env: clientEnv(server), stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], ...(options.signal ? { signal: options.signal } : {}) });
  const out: Buffer[] = [];
  let err = '';
  child.stdout?.on('data', (b: Buffer) => out.push(b));
  child.stderr?.on('data', (b: Buffer) => {
    err = (err + b.toString('utf8')).slice(-16_384);
  });
  const closed = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  let feeding: Promise<void> = Promise.resolve();
  if (options.stdin && child.stdin) {
    child.stdin.on('error', () => undefined);
    feeding = pipeline(options.stdin, child.stdin).catch(() => undefined);
  }
  let code: number | null;
  try {
    code = await closed;
  } catch (e) {
    if (options.signal?.aborted) throw e;
    throw new BackupError('VERIFY_PG_CLIENT', `cannot run ${bin} (${(e as NodeJS.ErrnoException).code ?? String(e)}); install the PostgreSQL client binaries or set verify.pgBin`, { permanent: true, cause: e });
  }
  await feeding;
  if (code !== 0) throw new BackupError('VERIFY_LOAD_FAILED', `${options.what} failed (${name} exit ${String(code)}): ${tail(err) || 'no error output'}`);
  return Buffer.concat(out).toString('utf8');
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Runs SQL and returns unaligned, tab-separated, tuples-only output. */
export function scratchQuery(server: ScratchServer, database: string, sql: string, signal?: AbortSignal): Promise<string> {
  return runClient(server, 'psql', ['-X', '-q', '-A', '-t', '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-d', database, '-c', sql], { what: `query on ${database}`, ...(signal ? { signal } : {}) });
}

export interface ScratchDatabase {
  readonly name: string;
  drop(): Promise<void>;
}

/** Creates an empty database `vcsa_verify_<random>`; returns it with its undo. */
export async function createScratchDatabase(server: ScratchServer, label: string): Promise<ScratchDatabase> {
  const name = `vcsa_verify_${label.toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 20)}_${randomBytes(5).toString('hex')}`;
  try {
    await scratchQuery(server, server.maintenanceDb, `CREATE DATABASE ${quoteIdent(name)} TEMPLATE template0`);
  } catch (err) {
    throw new BackupError('VERIFY_SCRATCH_UNAVAILABLE', `cannot create a scratch database on ${server.description} (verify.scratchUrl): ${(err as Error).message}`, { cause: err });
  }
  return {
    name,
    drop: async () => {
      await scratchQuery(server, server.maintenanceDb, `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    },
  };
}

/** Loads a plain-SQL dump (psql, stop at the first error, one transaction). */
export async function loadPlainSql(server: ScratchServer, database: string, file: string, signal?: AbortSignal): Promise<void> {
  const filtered = createReadStream(file).pipe(new ScratchSqlFilter());
  await runClient(server, 'psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '-d', database, '-f', '-'], {
    stdin: filtered,
    what: `loading ${file.split('/').pop() ?? file} with psql`,
    ...(signal ? { signal } : {}),
  });
}

/** Loads a pg_dump custom-format archive (pg_restore, stop at the first error, one transaction). */
export async function loadCustomArchive(server: ScratchServer, database: string, file: string, signal?: AbortSignal): Promise<void> {
  await runClient(server, 'pg_restore', ['--no-owner', '--no-privileges', '--exit-on-error', '--single-transaction', '-d', database, file], {
    what: `loading ${file.split('/').pop() ?? file} with pg_restore`,
    ...(signal ? { signal } : {}),
  });
}

export interface TableStats {
  readonly name: string;
  readonly rows: number;
  readonly bytes: number;
}

/**
 * Exact row counts and on-disk sizes of every user table, as tab-free rows (name, rows, bytes).
 * query_to_xml runs count(*) per table inside one statement: one round trip for any schema.
 * Written for PostgreSQL 9.0 and later (no format()): restore runs it on the appliance too.
 */
export const tableStatsSql = `SELECT n.nspname || '.' || c.relname,
      (xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname), false, true, '')))[1]::text,
      pg_catalog.pg_total_relation_size(c.oid)
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
    ORDER BY 1`;

export function parseTableStats(rows: readonly (readonly string[])[]): TableStats[] {
  return rows.map(([name = '', rows = '0', bytes = '0']) => ({ name, rows: Number(rows), bytes: Number(bytes) }));
}

/** Exact row counts and on-disk sizes of every user table. */
export async function tableStats(server: ScratchServer, database: string, signal?: AbortSignal): Promise<TableStats[]> {
  const out = await scratchQuery(server, database, tableStatsSql, signal);
  return parseTableStats(
    out
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.split('\t')),
  );
}
