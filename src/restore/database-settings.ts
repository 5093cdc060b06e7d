import { BackupError } from '../errors.ts';
import { maintenanceDatabase, quoteIdent, quoteLiteral, type AppliancePostgres } from './appliance-postgres.ts';

/**
 * What a database is besides its contents, read from the current database so the restored one
 * is the same object to vCenter: owner, encoding, collation, tablespace, connection limit,
 * database privileges (GRANT CONNECT …), comment, and per-database settings (ALTER DATABASE …
 * SET, ALTER ROLE … IN DATABASE … SET). A plain `pg_dump` holds none of these (only what is
 * inside the database: tables, their owners and grants), so restore copies them.
 */
export interface DatabaseSettings {
  readonly owner: string;
  readonly encoding: string;
  readonly collate: string;
  readonly ctype: string;
  readonly tablespace: string;
  readonly connectionLimit: number;
  /** Raw aclitem[] text ('' = default privileges). */
  readonly acl: string;
  readonly comment: string | null;
  /** role ('' = every role) → "name=value" entries. */
  readonly settings: readonly { readonly role: string; readonly entry: string }[];
}

function hexText(hex: string): string {
  return Buffer.from(hex, 'hex').toString('utf8');
}

/** Reads the settings of `database`; null if it does not exist. */
export async function readDatabaseSettings(server: AppliancePostgres, database: string): Promise<DatabaseSettings | null> {
  const rows = await server.query(
    maintenanceDatabase,
    `SELECT pg_catalog.pg_get_userbyid(d.datdba), pg_catalog.pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, t.spcname, d.datconnlimit,
       coalesce(d.datacl::text, ''), coalesce(encode(convert_to(pg_catalog.shobj_description(d.oid, 'pg_database'), 'UTF8'), 'hex'), '-')
     FROM pg_catalog.pg_database d JOIN pg_catalog.pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = ${quoteLiteral(database)};`,
  );
  const row = rows[0];
  if (!row) return null;
  const [owner = '', encoding = '', collate = '', ctype = '', tablespace = '', limit = '-1', acl = '', comment = '-'] = row;
  const settings = await server.query(
    maintenanceDatabase,
    `SELECT CASE WHEN s.setrole = 0 THEN '' ELSE pg_catalog.pg_get_userbyid(s.setrole) END, encode(convert_to(c.entry, 'UTF8'), 'hex')
     FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) AS c(entry)
     WHERE d.datname = ${quoteLiteral(database)} ORDER BY 1, 2;`,
  );
  return {
    owner,
    encoding,
    collate,
    ctype,
    tablespace,
    connectionLimit: Number(limit),
    acl,
    comment: comment === '-' ? null : hexText(comment),
    settings: settings.map(([role = '', entry = '']) => ({ role, entry: hexText(entry) })),
  };
}

/** CREATE DATABASE for an empty copy of a database with these settings (no role settings yet: they could disturb the load). */
export function createDatabaseSql(name: string, s: DatabaseSettings): string {
  const statements = [
    `CREATE DATABASE ${quoteIdent(name)} OWNER ${quoteIdent(s.owner)} TEMPLATE template0 ENCODING ${quoteLiteral(s.encoding)} LC_COLLATE ${quoteLiteral(s.collate)} LC_CTYPE ${quoteLiteral(s.ctype)} TABLESPACE ${quoteIdent(s.tablespace)} CONNECTION LIMIT ${String(s.connectionLimit)};`,
    ...privilegeStatements(name, s),
  ];
  if (s.comment !== null) statements.push(`COMMENT ON DATABASE ${quoteIdent(name)} IS ${quoteLiteral(s.comment)};`);
  return statements.join('\n');
}

/** ALTER DATABASE … SET and ALTER ROLE … IN DATABASE … SET, applied once the data is in. */
export function roleSettingsSql(name: string, s: DatabaseSettings): string {
  return s.settings
    .map(({ role, entry }) => {
      const eq = entry.indexOf('=');
      const key = entry.slice(0, eq);
      const value = settingValue(key, entry.slice(eq + 1));
      const target = role === '' ? `DATABASE ${quoteIdent(name)}` : `ROLE ${quoteIdent(role)} IN DATABASE ${quoteIdent(name)}`;
      return `ALTER ${target} SET ${/^[A-Za-z_][A-Za-z0-9_.]*$/.test(key) ? key : quoteIdent(key)} = ${value};`;
    })
    .join('\n');
}

/**
 * List settings (search_path…) are stored already in list syntax ("$user", public) and must be
 * given back as a list, as pg_dumpall does; every other value is one literal.
 */
const listSettings = new Set(['search_path', 'temp_tablespaces', 'session_preload_libraries', 'shared_preload_libraries', 'local_preload_libraries']);
const listSyntax = /^\s*(?:"(?:[^"]|"")*"|[A-Za-z0-9_$.-]+)(?:\s*,\s*(?:"(?:[^"]|"")*"|[A-Za-z0-9_$.-]+))*\s*$/;

function settingValue(key: string, raw: string): string {
  if (listSettings.has(key.toLowerCase()) && listSyntax.test(raw)) {
    // Each element as a literal: 'x' and "x" name the same schema once PostgreSQL stores it.
    return raw
      .split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/)
      .map((e) => e.trim())
      .map((e) => quoteLiteral(e.startsWith('"') ? e.slice(1, -1).replace(/""/g, '"') : e))
      .join(', ');
  }
  return quoteLiteral(raw);
}

const privilegeLetters: Readonly<Record<string, string>> = { C: 'CREATE', T: 'TEMPORARY', c: 'CONNECT' };

/** One aclitem: `grantee=privs/grantor`, grantee '' for PUBLIC; names may be double-quoted. */
function parseAclItem(item: string): { grantee: string; privileges: { name: string; grantable: boolean }[] } {
  const m = /^((?:"(?:[^"]|"")*"|[^=]*))=([A-Za-z*]*)\/(.*)$/.exec(item);
  if (!m) throw new BackupError('RESTORE_DATABASE_SETTINGS', `cannot read the database privilege ${JSON.stringify(item)}; restore the privileges by hand`);
  const rawGrantee = m[1] ?? '';
  const grantee = rawGrantee.startsWith('"') ? rawGrantee.slice(1, -1).replace(/""/g, '"') : rawGrantee;
  const privileges: { name: string; grantable: boolean }[] = [];
  const letters = m[2] ?? '';
  for (let i = 0; i < letters.length; i++) {
    const name = privilegeLetters[letters[i] ?? ''];
    if (!name) continue;
    const grantable = letters[i + 1] === '*';
    if (grantable) i++;
    privileges.push({ name, grantable });
  }
  return { grantee, privileges };
}

/** Splits `{a,"b,c",d}` into its items. */
function aclItems(acl: string): string[] {
  const inner = acl.trim().replace(/^\{/, '').replace(/\}$/, '');
  const items: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < inner.length; i++) {
    const ch = inner[i] ?? '';
    if (ch === '\\' && quoted) {
      current += inner[++i] ?? '';
    } else if (ch === '"') {
      quoted = !quoted;
    } else if (ch === ',' && !quoted) {
      items.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  if (current !== '') items.push(current);
  return items;
}

/** The database's privileges as statements: defaults revoked, then each grant of the original. */
function privilegeStatements(name: string, s: DatabaseSettings): string[] {
  if (s.acl === '') return [];
  const db = quoteIdent(name);
  const out = [`REVOKE ALL ON DATABASE ${db} FROM PUBLIC;`, `REVOKE ALL ON DATABASE ${db} FROM ${quoteIdent(s.owner)};`];
  for (const item of aclItems(s.acl)) {
    const { grantee, privileges } = parseAclItem(item);
    const to = grantee === '' ? 'PUBLIC' : quoteIdent(grantee);
    for (const p of privileges) out.push(`GRANT ${p.name} ON DATABASE ${db} TO ${to}${p.grantable ? ' WITH GRANT OPTION' : ''};`);
  }
  return out;
}
