import { spawn } from 'node:child_process';
import { BackupError } from '../errors.ts';
import type { ErrorCode } from '../error-codes.ts';

/** Where the simulated appliances find the PostgreSQL client binaries (Debian's layout). */
export const defaultPgBin = process.env['VCSA_SIM_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';
export const defaultPgUrl = 'postgres://postgres@127.0.0.1:5432/postgres';

export interface PgServer {
  readonly host: string;
  readonly port: string;
  readonly user: string;
  /** The URL as given, for admin connections. */
  readonly url: string;
}

/** Reads `postgres://user@host:port/db`; the simulation needs trust authentication, so no password. */
export function parsePgUrl(url: string): PgServer {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new BackupError('SIM_PG_URL', `not a PostgreSQL URL: ${JSON.stringify(url)}; expected postgres://user@host:port/database`, { permanent: true });
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new BackupError('SIM_PG_URL', `not a PostgreSQL URL (scheme ${parsed.protocol}); expected postgres://user@host:port/database`, { permanent: true });
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  return { host, port: parsed.port || '5432', user: decodeURIComponent(parsed.username) || 'postgres', url };
}

/** The same server and user, another database. */
export function databaseUrl(server: PgServer, database: string): string {
  const u = new URL(server.url);
  u.pathname = `/${encodeURIComponent(database)}`;
  u.search = '';
  return u.toString();
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Runs SQL through psql (statements one by one, stopping at the first error) and returns its
 * unaligned, tuples-only output. The simulation drives PostgreSQL only through its own client
 * binaries, like the appliance does.
 */
export async function psql(url: string, sql: string, options: { pgBin?: string } = {}): Promise<string> {
  const bin = `${options.pgBin ?? defaultPgBin}/psql`;
  const { code, stdout, stderr } = await runPgTool(bin, ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', url, '-f', '-'], sql, 'SIM_PSQL_FAILED');
  if (code !== 0) {
    const db = new URL(url).pathname.slice(1);
    throw new BackupError('SIM_PSQL_FAILED', `psql on database ${db} failed (exit ${String(code)}): ${stderr.toString('utf8').trim() || 'no error output'}`);
  }
  return stdout.toString('utf8');
}

/** Runs one of the PostgreSQL client binaries with `input` on its stdin and collects its output. */
export async function runPgTool(bin: string, args: readonly string[], input: string | Buffer, errorCode: ErrorCode): Promise<{ code: number | null; stdout: Buffer; stderr: Buffer }> {
  const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PGAPPNAME: 'vcsa-sim' } });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => err.push(b));
  child.stdin.on('error', () => undefined);
  child.stdin.end(input);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  }).catch((e: unknown) => {
    throw new BackupError(errorCode, `cannot run ${bin} (${(e as NodeJS.ErrnoException).code ?? String(e)}); install PostgreSQL 15 client binaries or set VCSA_SIM_PG_BIN`, { cause: e });
  });
  return { code, stdout: Buffer.concat(out), stderr: Buffer.concat(err) };
}
