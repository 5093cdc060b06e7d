/**
 * A profile is data: what to stop and start on an appliance, and how to dump and restore each
 * of its databases. Commands are shell lines run by an executor on the appliance. `{{NAME}}`
 * is a profile variable (a target may override it in fleet.yaml); `$NAME` is left to the
 * appliance's shell (e.g. variables sourced from embedded_db.cfg). `{{FILE}}` in a restore
 * command is the path of the uploaded dump on the appliance.
 */
export interface ServiceSpec {
  readonly name: string;
  readonly stop: string;
  readonly start: string;
  /** Exits 0 when, and only when, the service is running. */
  readonly status: string;
}

export interface DumpSpec {
  /** Short id: "vcdb", "inventory". */
  readonly name: string;
  /** File name before compression; stored as `<file>.gz`. */
  readonly file: string;
  /** Writes the dump to stdout. */
  readonly dump: string;
  /** Restores from `{{FILE}}` on the appliance. */
  readonly restore: string;
  /** How a scratch restore for `verify` loads this dump: plain SQL through psql, or a pg_restore archive. */
  readonly format: 'plain-sql' | 'pg-custom';
  /**
   * Where this dump's PostgreSQL database lives on the appliance. With it, restore loads the dump
   * into a new database beside the current one and swaps names (docs/restore.md); without it, or
   * when `name` comes out empty on the appliance, restore runs `restore` in place.
   */
  readonly database?: DatabaseSpec;
}

/** How restore reaches a dump's database with the appliance's own client tools, as a superuser. */
export interface DatabaseSpec {
  /** Shell lines run before each client command, e.g. sourcing embedded_db.cfg and exporting PGPASSWORD; may be ''. */
  readonly env: string;
  /** A shell word naming the database once `env` has run, e.g. "$EMB_DB_INSTANCE"; empty means: restore in place. */
  readonly name: string;
  /** The appliance's psql, connecting as a superuser; restore adds its own options and `-d`. */
  readonly psql: string;
  /** The appliance's pg_restore, connecting as a superuser; restore adds its own options and `-d`. */
  readonly pgRestore: string;
}

export interface Profile {
  readonly name: string;
  readonly description: string;
  readonly variables: Readonly<Record<string, string>>;
  /** In stop order; services are started in reverse. */
  readonly services: readonly ServiceSpec[];
  readonly dumps: readonly DumpSpec[];
}
