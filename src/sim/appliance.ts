import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { BackupError, combineErrors, errorMessage } from '../errors.ts';
import { targetNamePattern } from '../config/schema.ts';
import { shellQuote } from '../profiles/render.ts';
import { fillVcdb } from './vcdb-data.ts';
import { databaseUrl, defaultPgBin, defaultPgUrl, parsePgUrl, psql, quoteIdent, type PgServer } from './postgres.ts';

/** The two services of a VCSA 5.5, in the order the backup procedure stops them. */
export const simServices = ['vmware-vpxd', 'vmware-inventoryservice'] as const;
export type SimService = (typeof simServices)[number];
export type SimServiceAction = 'start' | 'stop' | 'restart' | 'status';

/** The appliance generations the simulator builds: the classic layout, and service-control with vPostgres `current`. */
export const simProfiles = ['vcsa-5.5', 'vcsa-6.x'] as const;
export type SimProfile = (typeof simProfiles)[number];

/** The role that owns the simulated databases, as `vc` owns the VCDB on a real appliance. */
export const simDbUser = 'vc';

export interface SimApplianceOptions {
  /** Appliance (and target) name, e.g. "vc01". */
  readonly name: string;
  /** The appliance's file tree is `<baseDir>/<name>`; it must not exist yet. */
  readonly baseDir: string;
  /** The fleet's audit log (JSON lines), shared by every appliance of the fleet. */
  readonly auditLog: string;
  /** Admin connection to the PostgreSQL server that holds the databases (trust auth). */
  readonly pgUrl?: string;
  /** Directory of psql, pg_dump and pg_restore. */
  readonly pgBin?: string;
  /**
   * The daemons exit when this process is gone, so a crashed test or `simulate` leaves no
   * daemon behind. Default: this process; `null` lets them outlive it.
   */
  readonly ownerPid?: number | null;
  /**
   * How often vpxd writes an event and the inventory service syncs (default 200 ms, as in the
   * appliance image). Each tick costs a few statements; at 40 ms an idle appliance took about
   * 8 % of a core, which a fleet of them on a 2-core machine notices.
   */
  readonly tickMs?: number;
  /**
   * Grow the VCDB to about this many MiB of vCenter-shaped data (statistics, events, tasks)
   * before the services start (default 0: the few rows the demo needs). See vcdb-data.ts.
   */
  readonly vcdbMb?: number;
  /** Start both services before returning, like a booted appliance (default true). */
  readonly start?: boolean;
}

export interface SimVcsa6ApplianceOptions extends SimApplianceOptions {
  /**
   * What the appliance's vPostgres tools say they are (`pg_dump --version`), e.g. "9.4.26" for
   * a VCSA 6.5 whose pg_dump cannot take --snapshot; default "9.6.24" (a 6.7). The binaries
   * behind them are the host's PostgreSQL either way.
   */
  readonly vpostgresVersion?: string;
}

export interface ServiceCommandResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface SimAppliance {
  readonly name: string;
  /** Profile variable ROOT. */
  readonly root: string;
  /** Profile variable SERVICE: the appliance's `service` script. */
  readonly serviceCommand: string;
  readonly vcdbName: string;
  readonly inventoryDbName: string;
  /** Admin URLs (the pgUrl's user) of the two databases. */
  readonly vcdbUrl: string;
  readonly inventoryUrl: string;
  /** Overrides for the vcsa-5.5 profile (INVSVC_DB: its inventory database is PostgreSQL, restored by swap like the VCDB). */
  readonly variables: { readonly ROOT: string; readonly SERVICE: string; readonly INVSVC_DB: string };
  /** Runs `service <name> <action>` and returns its exit code and output (never throws on exit codes). */
  service(name: SimService, action: SimServiceAction): Promise<ServiceCommandResult>;
  serviceRunning(name: SimService): Promise<boolean>;
  servicesRunning(): Promise<boolean>;
  /** vpxd's newest event in the VCDB, and the event the inventory service last mirrored. */
  readSequences(): Promise<{ vcdb: number; inventory: number }>;
  /** Runs SQL as admin on one of the databases; returns psql's unaligned, tuples-only output. */
  sql(database: 'vcdb' | 'inventory', text: string): Promise<string>;
  /** Stops the services, drops the databases and removes the file tree. Idempotent. */
  destroy(): Promise<void>;
}

/**
 * A stand-in VCSA 6.x/7.0: `service-control` instead of `service`, vPostgres in
 * /opt/vmware/vpostgres/current, the vc user's password in /etc/vmware-vpx/vcdb.properties,
 * and one database (the VCDB: there is no Inventory Service database from 6.0 on).
 */
export interface SimVcsa6Appliance {
  readonly name: string;
  readonly profile: 'vcsa-6.x';
  /** Profile variable ROOT. */
  readonly root: string;
  /** Profile variable SERVICE_CONTROL: the appliance's `service-control`. */
  readonly serviceControlCommand: string;
  readonly vcdbName: string;
  readonly vcdbUrl: string;
  /** Overrides for the vcsa-6.x profile. */
  readonly variables: { readonly ROOT: string; readonly SERVICE_CONTROL: string; readonly VCDB_NAME: string; readonly VCDB_HOST: string };
  /** Runs `service-control ARGS…` (never throws on exit codes). */
  serviceControl(...args: readonly string[]): Promise<ServiceCommandResult>;
  serviceRunning(name: 'vmware-vpxd'): Promise<boolean>;
  servicesRunning(): Promise<boolean>;
  /** vpxd's newest event in the VCDB. */
  readEvent(): Promise<number>;
  sql(database: 'vcdb', text: string): Promise<string>;
  destroy(): Promise<void>;
}

const scriptsDir = new URL('./scripts/', import.meta.url);

async function script(name: string, replacements: Record<string, string>): Promise<string> {
  let text = await readFile(new URL(name, scriptsDir), 'utf8');
  for (const [key, value] of Object.entries(replacements)) text = text.replaceAll(`@${key}@`, value);
  return text;
}

function dbNamePart(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 30);
}

const rolesSql = `DO $$ BEGIN CREATE ROLE ${simDbUser} LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;\n`;

const vcdbSchema = `SET ROLE ${simDbUser};
CREATE TABLE vpx_event (seq bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE vpx_entity (id serial PRIMARY KEY, name text NOT NULL UNIQUE, type text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO vpx_entity (name, type) VALUES
  ('Datacenter', 'datacenter'), ('Cluster01', 'cluster'), ('esx01.lab.local', 'host'), ('esx02.lab.local', 'host'),
  ('vm-web01', 'vm'), ('vm-app01', 'vm'), ('vm-db01', 'vm');
`;

const inventorySchema = `SET ROLE ${simDbUser};
CREATE TABLE inv_progress (id int PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL, synced_at timestamptz NOT NULL DEFAULT now());
INSERT INTO inv_progress (id, seq) VALUES (1, 0);
`;

function runFile(file: string, args: readonly string[]): Promise<ServiceCommandResult> {
  return new Promise((resolveRun, reject) => {
    execFile(file, args, { encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new BackupError('SIM_SERVICE_FAILED', `cannot run ${file} ${args.join(' ')}: ${err.message}`, { cause: err }));
        return;
      }
      resolveRun({ exitCode: err ? Number(err.code) : 0, stdout, stderr });
    });
  });
}

/** What one appliance generation puts on disk and runs; the rest is shared. */
interface Layout {
  readonly profile: SimProfile;
  readonly services: readonly string[];
  readonly inventory: boolean;
  readonly vpgBinDir: readonly string[];
  readonly vpgVersion: string;
}

interface BuiltAppliance {
  readonly root: string;
  readonly vcdbName: string;
  readonly inventoryDbName: string | undefined;
  readonly vcdbUrl: string;
  readonly inventoryUrl: string | undefined;
  readonly server: PgServer;
  readonly pgBin: string;
  /** Runs the appliance's daemon manager (`service NAME ACTION`). */
  readonly daemon: (svc: string, action: SimServiceAction) => Promise<ServiceCommandResult>;
  readonly destroy: () => Promise<void>;
}

/**
 * The shared part of every simulated appliance: databases on the real server, the daemons'
 * scripts and the audit log; the layout adds the generation's own paths and commands.
 */
async function buildSimAppliance(options: SimApplianceOptions, layout: Layout): Promise<BuiltAppliance> {
  const { name } = options;
  if (!targetNamePattern.test(name) || /^\d+$/.test(name)) {
    throw new BackupError('SIM_BAD_NAME', `appliance name ${JSON.stringify(name)}: use letters, digits, ".", "_" or "-", at most 63 characters, not all digits`, { permanent: true });
  }
  const pgBin = options.pgBin ?? defaultPgBin;
  const server: PgServer = parsePgUrl(options.pgUrl ?? defaultPgUrl);
  const tickMs = options.tickMs ?? 200;
  const ownerPid = options.ownerPid === undefined ? process.pid : options.ownerPid;

  await mkdir(options.baseDir, { recursive: true });
  const requestedRoot = resolve(options.baseDir, name);
  try {
    await mkdir(requestedRoot);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new BackupError('SIM_EXISTS', `${requestedRoot} already exists; choose another base directory or appliance name`, { permanent: true });
    }
    throw err;
  }
  // The daemons are recognised by their script path in /proc: use the path without symlinks.
  const root = await realpath(requestedRoot);
  const suffix = randomBytes(4).toString('hex');
  const vcdbName = `sim_${dbNamePart(name)}_${suffix}_vcdb`;
  const inventoryDbName = layout.inventory ? `sim_${dbNamePart(name)}_${suffix}_inv` : undefined;
  const vcdbUrl = databaseUrl(server, vcdbName);
  const inventoryUrl = inventoryDbName === undefined ? undefined : databaseUrl(server, inventoryDbName);
  const databases = [vcdbName, ...(inventoryDbName === undefined ? [] : [inventoryDbName])];
  // The daemon manager: `service` on a 5.5, hidden behind service-control on a 6.x.
  const daemonCommand = layout.profile === 'vcsa-5.5' ? join(root, 'sbin', 'service') : join(root, 'usr', 'lib', 'vcsa-sim', 'service');
  const auditLog = resolve(options.auditLog);
  await mkdir(dirname(auditLog), { recursive: true });

  const daemon = (svc: string, action: SimServiceAction): Promise<ServiceCommandResult> => runFile(daemonCommand, [svc, action]);

  let destroyed: Promise<void> | undefined;
  const destroy = (): Promise<void> => {
    destroyed ??= (async () => {
      const problems: unknown[] = [];
      for (const svc of layout.services) {
        try {
          const res = await daemon(svc, 'stop');
          if (res.exitCode !== 0) problems.push(new Error(`service ${svc} stop: ${res.stderr.trim()}`));
        } catch (err) {
          // The tree may be half built; the daemons also exit on their own once it is gone.
          if (!(err instanceof BackupError && /ENOENT/.test(err.message))) problems.push(err);
        }
      }
      // Restores keep the databases they replaced beside them (<db>_before_<run>): those go too.
      let derived: string[] = [];
      try {
        const like = (db: string): string => `datname LIKE '${db.replace(/_/g, '\\_')}\\_%'`;
        derived = (await psql(server.url, `SELECT datname FROM pg_database WHERE ${databases.map(like).join(' OR ')};`, { pgBin })).split('\n').filter((l) => l !== '');
      } catch (err) {
        problems.push(err);
      }
      for (const db of [...databases, ...derived]) {
        try {
          await psql(server.url, `DROP DATABASE IF EXISTS ${quoteIdent(db)} WITH (FORCE);`, { pgBin });
        } catch (err) {
          problems.push(err);
        }
      }
      try {
        await rm(root, { recursive: true, force: true });
      } catch (err) {
        problems.push(err);
      }
      if (problems.length > 0) {
        throw new BackupError('SIM_DESTROY_FAILED', `cleaning up simulated appliance ${name} failed: ${problems.map(errorMessage).join('; ')}`);
      }
    })();
    return destroyed;
  };

  try {
    await psql(server.url, rolesSql, { pgBin });
    for (const db of databases) {
      await psql(server.url, `CREATE DATABASE ${quoteIdent(db)} OWNER ${simDbUser} TEMPLATE template0;`, { pgBin });
    }
    await psql(vcdbUrl, vcdbSchema, { pgBin });
    if (inventoryUrl !== undefined) await psql(inventoryUrl, inventorySchema, { pgBin });
    if (options.vcdbMb) await fillVcdb(vcdbUrl, { mb: options.vcdbMb, owner: simDbUser, pgBin });

    const envFile = join(root, 'etc', 'vcsa-sim', 'appliance.env');
    const env: Record<string, string> = {
      SIM_NAME: name,
      SIM_ROOT: root,
      SIM_AUDIT: auditLog,
      SIM_PG_BIN: pgBin,
      SIM_PGHOST: server.host,
      SIM_PGPORT: server.port,
      SIM_VCDB: vcdbName,
      SIM_INVDB: inventoryDbName ?? '',
      SIM_DB_USER: simDbUser,
      SIM_SERVICES: layout.services.join(' '),
      SIM_VPG_VERSION: layout.vpgVersion,
      SIM_OWNER_PID: ownerPid === null ? '' : String(ownerPid),
      SIM_TICK: (tickMs / 1000).toFixed(3),
      SIM_START_TIMEOUT: '30',
      SIM_STOP_GRACE: '5',
    };
    const envText = `# Written by vcsa-backup's appliance simulator.\n${Object.entries(env).map(([k, v]) => `${k}=${shellQuote(v)}`).join('\n')}\n`;
    const placeholders = { SIM_ENV: shellQuote(envFile) };
    const password = randomBytes(12).toString('base64url');
    const lib = join(root, 'usr', 'lib', 'vcsa-sim');
    const files: [string, string, number][] = [
      [envFile, envText, 0o644],
      [daemonCommand, await script('service.sh', placeholders), 0o755],
      [join(lib, 'daemon-lib.sh'), await script('daemon-lib.sh', placeholders), 0o644],
      [join(lib, 'vpxd.sh'), await script('vpxd.sh', placeholders), 0o755],
      ...(await Promise.all(
        ['pg_dump', 'psql', 'pg_restore'].map(async (tool): Promise<[string, string, number]> => [
          join(root, ...layout.vpgBinDir, tool),
          await script('pg-wrapper.sh', { ...placeholders, TOOL: tool }),
          0o755,
        ]),
      )),
    ];
    if (layout.profile === 'vcsa-5.5') {
      files.push(
        [
          join(root, 'etc', 'vmware-vpx', 'embedded_db.cfg'),
          `EMB_DB_INSTANCE='${vcdbName}'\nEMB_DB_USER='${simDbUser}'\nEMB_DB_PASSWORD='${password}'\nEMB_DB_STORAGE='${root}/storage/db'\n`,
          0o600,
        ],
        [join(lib, 'inventoryservice.sh'), await script('inventoryservice.sh', placeholders), 0o755],
        [join(root, 'usr', 'lib', 'vmware-vpx', 'inventoryservice', 'scripts', 'backup.sh'), await script('inventory-backup.sh', placeholders), 0o755],
        [join(root, 'usr', 'lib', 'vmware-vpx', 'inventoryservice', 'scripts', 'restore.sh'), await script('inventory-restore.sh', placeholders), 0o755],
      );
    } else {
      files.push(
        [join(root, 'etc', 'vmware-vpx', 'vcdb.properties'), vcdbProperties(server, vcdbName, password), 0o600],
        [join(root, 'usr', 'bin', 'service-control'), await script('service-control.sh', placeholders), 0o755],
      );
    }
    for (const [path, text, mode] of files) {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, text, { mode });
      await chmod(path, mode);
    }
    for (const dir of ['var/run', 'var/log', 'tmp']) await mkdir(join(root, dir), { recursive: true });

    if (options.start ?? true) {
      // Start order is the reverse of the stop order, as the profile does.
      for (const svc of [...layout.services].reverse()) {
        const res = await daemon(svc, 'start');
        if (res.exitCode !== 0) {
          throw new BackupError('SIM_START_FAILED', `simulated appliance ${name}: service ${svc} start failed: ${res.stderr.trim() || res.stdout.trim()}`);
        }
      }
    }
  } catch (err) {
    try {
      await destroy();
    } catch (cleanupErr) {
      throw combineErrors(err, [cleanupErr]);
    }
    throw err;
  }
  return { root, vcdbName, inventoryDbName, vcdbUrl, inventoryUrl, server, pgBin, daemon, destroy };
}

/** /etc/vmware-vpx/vcdb.properties as a VCSA 6.x writes it (the JDBC settings of vpxd). */
function vcdbProperties(server: PgServer, vcdbName: string, password: string): string {
  return [
    'driver = org.postgresql.Driver',
    'dbtype = PostgreSQL',
    `url = jdbc:postgresql://${server.host}:${server.port}/${vcdbName}`,
    `username = ${simDbUser}`,
    `password = ${password}`,
    'password.encrypted = false',
    '',
  ].join('\n');
}

/**
 * A stand-in VCSA 5.5 in a directory: the paths and commands of the real appliance, backed by
 * two databases on a real PostgreSQL server, with both services running when this returns.
 */
export async function createSimAppliance(options: SimApplianceOptions): Promise<SimAppliance> {
  const built = await buildSimAppliance(options, { profile: 'vcsa-5.5', services: simServices, inventory: true, vpgBinDir: ['opt', 'vmware', 'vpostgres', '1.0', 'bin'], vpgVersion: '' });
  const { root, vcdbName, vcdbUrl, pgBin } = built;
  const inventoryDbName = built.inventoryDbName ?? '';
  const inventoryUrl = built.inventoryUrl ?? '';
  const serviceCommand = join(root, 'sbin', 'service');
  const service = (svc: SimService, action: SimServiceAction): Promise<ServiceCommandResult> => built.daemon(svc, action);
  const serviceRunning = async (svc: SimService): Promise<boolean> => (await service(svc, 'status')).exitCode === 0;
  const sql = (database: 'vcdb' | 'inventory', text: string): Promise<string> => psql(database === 'vcdb' ? vcdbUrl : inventoryUrl, text, { pgBin });

  return {
    name: options.name,
    root,
    serviceCommand,
    vcdbName,
    inventoryDbName,
    vcdbUrl,
    inventoryUrl,
    variables: { ROOT: root, SERVICE: serviceCommand, INVSVC_DB: inventoryDbName },
    service,
    serviceRunning,
    async servicesRunning() {
      const states = await Promise.all(simServices.map(serviceRunning));
      return states.every(Boolean);
    },
    async readSequences() {
      const [vcdb, inventory] = await Promise.all([
        sql('vcdb', 'SELECT coalesce(max(seq), 0) FROM vpx_event;'),
        sql('inventory', 'SELECT coalesce(max(seq), 0) FROM inv_progress;'),
      ]);
      return { vcdb: Number(vcdb.trim()), inventory: Number(inventory.trim()) };
    },
    sql,
    destroy: built.destroy,
  };
}

/**
 * A stand-in VCSA 6.x/7.0 in a directory (see SimVcsa6Appliance), backed by its VCDB on a real
 * PostgreSQL server, with vpxd running when this returns.
 */
export async function createSimVcsa6Appliance(options: SimVcsa6ApplianceOptions): Promise<SimVcsa6Appliance> {
  const vpgVersion = options.vpostgresVersion ?? '9.6.24';
  if (!/^\d+(\.\d+){1,2}$/.test(vpgVersion)) {
    throw new BackupError('SIM_BAD_VERSION', `vpostgresVersion ${JSON.stringify(vpgVersion)}: expected a PostgreSQL version such as 9.6.24 or 12.5`, { permanent: true });
  }
  const built = await buildSimAppliance(options, { profile: 'vcsa-6.x', services: ['vmware-vpxd'], inventory: false, vpgBinDir: ['opt', 'vmware', 'vpostgres', 'current', 'bin'], vpgVersion });
  const { root, vcdbName, vcdbUrl, server, pgBin } = built;
  const serviceControlCommand = join(root, 'usr', 'bin', 'service-control');
  const serviceControl = (...args: readonly string[]): Promise<ServiceCommandResult> => runFile(serviceControlCommand, args);
  const serviceRunning = async (svc: 'vmware-vpxd'): Promise<boolean> => (await built.daemon(svc, 'status')).exitCode === 0;
  const sql = (_database: 'vcdb', text: string): Promise<string> => psql(vcdbUrl, text, { pgBin });
  return {
    name: options.name,
    profile: 'vcsa-6.x',
    root,
    serviceControlCommand,
    vcdbName,
    vcdbUrl,
    // The profile's pg_dump connects with -h VCDB_HOST: here the server that holds the VCDB.
    variables: { ROOT: root, SERVICE_CONTROL: serviceControlCommand, VCDB_NAME: vcdbName, VCDB_HOST: server.host },
    serviceControl,
    serviceRunning,
    servicesRunning: () => serviceRunning('vmware-vpxd'),
    async readEvent() {
      return Number((await sql('vcdb', 'SELECT coalesce(max(seq), 0) FROM vpx_event;')).trim());
    },
    sql,
    destroy: built.destroy,
  };
}
