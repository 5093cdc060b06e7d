import type { DatabaseSpec, Profile } from './profile.ts';

/** The VCSA 5.5 recipe's access (KB 2034505): embedded_db.cfg's password, the postgres user. */
function vcsa55Database(name: string): DatabaseSpec {
  return {
    env: '. {{DB_CFG}}; export PGPASSWORD="$EMB_DB_PASSWORD"',
    name,
    psql: '{{VPG_BIN}}/psql -U postgres',
    pgRestore: '{{VPG_BIN}}/pg_restore -U postgres',
  };
}

/**
 * VCSA 5.5: the classic recipe (VMware KB 2034505 for the VCDB, KB 2062682 for the Inventory
 * Service). vPostgres lives in /opt/vmware/vpostgres/1.0/bin on most builds and 9.0/bin on some:
 * override VPG_BIN. ROOT prefixes every path, so a simulated appliance in a directory runs the
 * same commands.
 */
const vcsa55: Profile = {
  name: 'vcsa-5.5',
  description: 'vCenter Server Appliance 5.5: VCDB (embedded vPostgres) and Inventory Service database',
  variables: {
    ROOT: '',
    SERVICE: 'service',
    DB_CFG: '{{ROOT}}/etc/vmware-vpx/embedded_db.cfg',
    VPG_BIN: '{{ROOT}}/opt/vmware/vpostgres/1.0/bin',
    INVSVC_SCRIPTS: '{{ROOT}}/usr/lib/vmware-vpx/inventoryservice/scripts',
    // Scratch space on the appliance for the Inventory Service's backup file and for restores.
    APPLIANCE_TMP: '{{ROOT}}/tmp',
    // The Inventory Service database's name when it is a PostgreSQL database on the appliance's
    // vPostgres (as on the simulated appliance): restore then swaps it like the VCDB. Empty: its
    // own restore.sh restores it in place.
    INVSVC_DB: '',
  },
  services: [
    {
      name: 'vmware-vpxd',
      stop: '{{SERVICE}} vmware-vpxd stop',
      start: '{{SERVICE}} vmware-vpxd start',
      status: '{{SERVICE}} vmware-vpxd status',
    },
    {
      name: 'vmware-inventoryservice',
      stop: '{{SERVICE}} vmware-inventoryservice stop',
      start: '{{SERVICE}} vmware-inventoryservice start',
      status: '{{SERVICE}} vmware-inventoryservice status',
    },
  ],
  dumps: [
    {
      name: 'vcdb',
      file: 'postgres.sql',
      format: 'plain-sql',
      // pipefail-free on purpose: pg_dump is the only command in the pipeline that writes stdout.
      dump: 'set -e; . {{DB_CFG}}; PGPASSWORD="$EMB_DB_PASSWORD" exec {{VPG_BIN}}/pg_dump "$EMB_DB_INSTANCE" -U "$EMB_DB_USER" -Fp -c',
      // One transaction and ON_ERROR_STOP: a restore that fails half way changes nothing.
      restore:
        'set -e; . {{DB_CFG}}; PGPASSWORD="$EMB_DB_PASSWORD" exec {{VPG_BIN}}/psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d "$EMB_DB_INSTANCE" -U postgres -f {{FILE}}',
      database: vcsa55Database('"$EMB_DB_INSTANCE"'),
    },
    {
      name: 'inventory',
      file: 'inventory_services.DB',
      format: 'pg-custom',
      // backup.sh only writes to a file: write it to scratch space, stream it, always remove it.
      dump: 'set -e; f={{APPLIANCE_TMP}}/vcsa-backup-inventory.$$.DB; trap \'rm -f "$f"\' EXIT; {{INVSVC_SCRIPTS}}/backup.sh -file "$f" >&2; cat "$f"',
      restore: 'set -e; {{INVSVC_SCRIPTS}}/restore.sh -backup {{FILE}} >&2',
      database: vcsa55Database('{{INVSVC_DB}}'),
    },
  ],
};

/**
 * VCSA 6.0–6.7: services through service-control, vPostgres in /opt/vmware/vpostgres/current,
 * the vc user's password in vcdb.properties. No Inventory Service database.
 */
const vcsa6: Profile = {
  name: 'vcsa-6.x',
  description: 'vCenter Server Appliance 6.0–6.7: VCDB (embedded vPostgres)',
  variables: {
    ROOT: '',
    SERVICE_CONTROL: 'service-control',
    VPG_BIN: '{{ROOT}}/opt/vmware/vpostgres/current/bin',
    VCDB_PROPERTIES: '{{ROOT}}/etc/vmware-vpx/vcdb.properties',
    VCDB_NAME: 'VCDB',
    VCDB_USER: 'vc',
    APPLIANCE_TMP: '{{ROOT}}/tmp',
  },
  services: [
    {
      name: 'vmware-vpxd',
      stop: '{{SERVICE_CONTROL}} --stop vmware-vpxd',
      start: '{{SERVICE_CONTROL}} --start vmware-vpxd',
      // service-control prints "Running:" and "Stopped:" sections; look for ours under Running.
      status: '{{SERVICE_CONTROL}} --status vmware-vpxd 2>&1 | awk \'/^Running:/{r=1;next} /^[A-Za-z]+:/{r=0} r && /vmware-vpxd/{found=1} END{exit !found}\'',
    },
  ],
  dumps: [
    {
      name: 'vcdb',
      file: 'postgres.sql',
      format: 'plain-sql',
      dump:
        'set -e; PGPASSWORD="$(sed -n \'s/^password *= *//p\' {{VCDB_PROPERTIES}})" exec {{VPG_BIN}}/pg_dump -h localhost -U {{VCDB_USER}} -Fp -c {{VCDB_NAME}}',
      restore: 'set -e; exec {{VPG_BIN}}/psql -X -q -v ON_ERROR_STOP=1 --single-transaction -h localhost -U postgres -d {{VCDB_NAME}} -f {{FILE}}',
      database: { env: '', name: '{{VCDB_NAME}}', psql: '{{VPG_BIN}}/psql -h localhost -U postgres', pgRestore: '{{VPG_BIN}}/pg_restore -h localhost -U postgres' },
    },
  ],
};

/** Any PostgreSQL database, online (no services stopped). Authentication through ~/.pgpass or trust. */
const postgres: Profile = {
  name: 'postgres',
  description: 'A PostgreSQL database dumped online with pg_dump (plain SQL)',
  variables: {
    PG_BIN: '/usr/bin',
    PGHOST: '127.0.0.1',
    PGPORT: '5432',
    PGUSER: 'postgres',
    PGDATABASE: 'postgres',
  },
  services: [],
  dumps: [
    {
      name: 'db',
      file: 'postgres.sql',
      format: 'plain-sql',
      dump: 'exec {{PG_BIN}}/pg_dump -h {{PGHOST}} -p {{PGPORT}} -U {{PGUSER}} -Fp -c {{PGDATABASE}}',
      restore: 'exec {{PG_BIN}}/psql -X -q -v ON_ERROR_STOP=1 --single-transaction -h {{PGHOST}} -p {{PGPORT}} -U {{PGUSER}} -d {{PGDATABASE}} -f {{FILE}}',
      database: {
        env: '',
        name: '{{PGDATABASE}}',
        psql: '{{PG_BIN}}/psql -h {{PGHOST}} -p {{PGPORT}} -U {{PGUSER}}',
        pgRestore: '{{PG_BIN}}/pg_restore -h {{PGHOST}} -p {{PGPORT}} -U {{PGUSER}}',
      },
    },
  ],
};

/**
 * vCenter 6.7–8.0: the appliance's own file-based backup through its REST API (src/native/).
 * Nothing runs in a shell and no service stops: the target has `api` instead of `executor`.
 */
const vcsaNative: Profile = {
  name: 'vcsa-native',
  description: "vCenter Server Appliance 6.7–8.0: the appliance's file-based backup (REST API), received over SFTP",
  variables: {},
  services: [],
  dumps: [],
};

export const builtinProfiles: ReadonlyMap<string, Profile> = new Map([vcsa55, vcsa6, postgres, vcsaNative].map((p) => [p.name, p]));
