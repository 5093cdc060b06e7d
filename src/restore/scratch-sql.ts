import { Transform, type TransformCallback } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

export interface SqlFilterOptions {
  /**
   * 'strip' (verify's scratch server): ownership and privilege statements are left out — the
   * appliance's roles (`vc`) need not exist there, and they say nothing about whether the data
   * loads. 'keep' (restore onto the appliance): owners and grants are restored as dumped.
   */
  readonly ownership?: 'strip' | 'keep';
}

/**
 * Adapts a plain-SQL dump taken with `pg_dump -c` for loading into an EMPTY database created
 * from template0, in one transaction with ON_ERROR_STOP (vPostgres 9.0's pg_dump has no
 * --if-exists):
 * - the clean section at the top (DROP …, ALTER TABLE … DROP CONSTRAINT/DEFAULT) is left out:
 *   nothing the dump drops exists in an empty database, and the first DROP of a missing table
 *   would fail the load. Except `DROP SCHEMA x;`, which becomes `DROP SCHEMA IF EXISTS x;`: old
 *   pg_dump versions drop and re-create `public`, which an empty database already has (empty);
 * - ownership and privilege statements are left out or kept (`ownership`).
 * COPY data blocks pass through untouched, whatever their lines look like, and their rows are
 * counted per table (`copiedRows`), so a restore can prove every row arrived.
 */
export class ScratchSqlFilter extends Transform {
  // A chunk may end inside a multi-byte character: decode across chunk boundaries.
  readonly #decoder = new StringDecoder('utf8');
  readonly #stripOwnership: boolean;
  #pending = '';
  #inCopy = false;
  #inCleanSection = true;
  #schema = 'public';
  #copyTable = '';
  readonly #rows = new Map<string, number>();

  constructor(options: SqlFilterOptions = {}) {
    super();
    this.#stripOwnership = (options.ownership ?? 'strip') === 'strip';
  }

  /** Rows of each COPY block seen so far, by "schema.table" (unquoted); complete once the stream ended. */
  get copiedRows(): ReadonlyMap<string, number> {
    return this.#rows;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const text = this.#pending + this.#decoder.write(chunk);
    const lastNewline = text.lastIndexOf('\n');
    if (lastNewline < 0) {
      this.#pending = text;
      callback();
      return;
    }
    this.#pending = text.slice(lastNewline + 1);
    callback(null, this.#filter(text.slice(0, lastNewline + 1)));
  }

  override _flush(callback: TransformCallback): void {
    const rest = this.#pending + this.#decoder.end();
    callback(null, rest ? this.#filter(rest) : '');
  }

  #filter(block: string): string {
    const lines = block.split('\n');
    const out: string[] = [];
    for (const [i, line] of lines.entries()) {
      // The split leaves '' after the final newline: keep the newline structure intact.
      if (i === lines.length - 1) {
        out.push(line);
        continue;
      }
      out.push(this.#rewrite(line) ?? '');
    }
    return out.join('\n');
  }

  #rewrite(line: string): string | null {
    if (this.#inCopy) {
      if (line === '\\.') this.#inCopy = false;
      else this.#rows.set(this.#copyTable, (this.#rows.get(this.#copyTable) ?? 0) + 1);
      return line;
    }
    const copy = /^COPY (.+?) (\(.*\) )?FROM stdin;$/.exec(line);
    if (copy) {
      this.#inCopy = true;
      this.#inCleanSection = false;
      this.#copyTable = qualifiedName(copy[1] ?? '', this.#schema);
      this.#rows.set(this.#copyTable, this.#rows.get(this.#copyTable) ?? 0);
      return line;
    }
    // Dumps of vPostgres 9.0 name tables without their schema and set search_path before each.
    const searchPath = /^SET search_path = ([^,;]+)/.exec(line);
    if (searchPath) this.#schema = unquoteIdentifier((searchPath[1] ?? 'public').trim());
    if (this.#inCleanSection) {
      const dropSchema = /^DROP SCHEMA ((?!IF EXISTS )[^;]+);$/.exec(line);
      if (dropSchema) return `DROP SCHEMA IF EXISTS ${dropSchema[1] ?? ''};`;
      if (/^DROP /.test(line) || /^ALTER TABLE .* DROP (CONSTRAINT|DEFAULT)\b.*;$/.test(line)) return null;
      if (/^(CREATE|COPY|SET default_|ALTER .* OWNER TO )/.test(line)) this.#inCleanSection = false;
    }
    if (this.#stripOwnership) {
      if (/^ALTER [A-Z ]+ .* OWNER TO [^;]+;$/.test(line)) return null;
      if (/^(GRANT|REVOKE) .*;$/.test(line)) return null;
    }
    return line;
  }
}

/** "name" → name (with "" → "), bare names as they are. */
function unquoteIdentifier(text: string): string {
  return text.startsWith('"') && text.endsWith('"') && text.length >= 2 ? text.slice(1, -1).replace(/""/g, '"') : text;
}

/** `schema.table`, `"Schema"."Ta.ble"` or a bare `table` (in `schema`) → "schema.table", unquoted. */
function qualifiedName(reference: string, schema: string): string {
  const parts: string[] = [];
  let rest = reference.trim();
  while (rest !== '') {
    const m = /^("(?:[^"]|"")*"|[^."]+)\.?/.exec(rest);
    if (!m) break;
    parts.push(unquoteIdentifier(m[1] ?? ''));
    rest = rest.slice(m[0].length);
  }
  return parts.length >= 2 ? `${parts[parts.length - 2]}.${parts[parts.length - 1]}` : `${schema}.${parts[0] ?? reference}`;
}
