import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { BackupError, combineErrors, errorMessage } from '../errors.ts';
import { createSimAppliance, createSimVcsa6Appliance, type SimAppliance, type SimProfile, type SimVcsa6Appliance } from './appliance.ts';
import { defaultPgUrl } from './postgres.ts';
import { simS3Json, simS3Section, simSecretsDir, startSimS3, stopOnce, writeSimJson, type SimS3 } from './sim-s3.ts';

export interface SimFleetOptions {
  readonly count: number;
  /** Which appliance generation to simulate (default vcsa-5.5); fleet.yaml uses the profile of that name. */
  readonly profile?: SimProfile;
  /** Holds fleet.yaml, sim.json, audit.jsonl, the appliances' trees, secrets and the spool. */
  readonly outDir: string;
  /** Use this S3 endpoint instead of starting an embedded one (bucket created by the worker). */
  readonly s3Endpoint?: string;
  readonly s3Bucket?: string;
  readonly s3Region?: string;
  readonly s3AccessKeyId?: string;
  readonly s3SecretAccessKey?: string;
  readonly pgUrl?: string;
  readonly pgBin?: string;
  readonly redisUrl?: string;
  /** Redis key prefix in fleet.yaml; default unique per fleet so that fleets never share queues. */
  readonly redisPrefix?: string;
  /** See SimApplianceOptions.ownerPid. */
  readonly ownerPid?: number | null;
  readonly tickMs?: number;
  /** Each appliance's VCDB holds about this many MiB of vCenter-shaped data (default: small). */
  readonly vcdbMb?: number;
}

/** sim.json (DESIGN §6). */
export interface SimJson {
  readonly audit: string;
  readonly s3: { readonly endpoint: string; readonly bucket: string; readonly region: string; readonly accessKeyId: string; readonly secretAccessKey: string };
  /** `inventoryUrl` only where the appliance has an Inventory Service database (VCSA 5.5). */
  readonly appliances: readonly { readonly name: string; readonly vcdbUrl: string; readonly inventoryUrl?: string }[];
}

export interface SimFleet {
  readonly outDir: string;
  readonly configPath: string;
  readonly simJsonPath: string;
  readonly auditLog: string;
  readonly appliances: readonly (SimAppliance | SimVcsa6Appliance)[];
  readonly sim: SimJson;
  /** Destroys the appliances and stops the embedded S3 endpoint. Idempotent. */
  stop(): Promise<void>;
}

export function applianceNames(count: number): string[] {
  const width = Math.max(2, String(count).length);
  return Array.from({ length: count }, (_, i) => `vc${String(i + 1).padStart(width, '0')}`);
}

/**
 * A simulated fleet for `simulate`, the demo and tests: N appliances named vc01…, an S3
 * endpoint, and a fleet.yaml a worker can use as it is.
 */
export async function startSimFleet(options: SimFleetOptions): Promise<SimFleet> {
  if (!Number.isInteger(options.count) || options.count < 1) {
    throw new BackupError('SIM_BAD_COUNT', `count: expected an integer from 1 and up, got ${options.count}`, { permanent: true });
  }
  const outDir = resolve(options.outDir);
  await mkdir(outDir, { recursive: true });
  const auditLog = join(outDir, 'audit.jsonl');
  await writeFile(auditLog, '', { flag: 'a' });
  const pgUrl = options.pgUrl ?? defaultPgUrl;

  const appliances: (SimAppliance | SimVcsa6Appliance)[] = [];
  const profile = options.profile ?? 'vcsa-5.5';
  let s3: SimS3 | undefined;
  const stop = stopOnce('the simulated fleet', () => {
    const embedded = s3?.embedded;
    return [...appliances.map((a) => () => a.destroy()), ...(embedded ? [() => embedded.stop()] : [])];
  });

  try {
    s3 = await startSimS3(options);

    const created = await Promise.allSettled(
      applianceNames(options.count).map((name) => {
        const applianceOptions = {
          name,
          baseDir: join(outDir, 'appliances'),
          auditLog,
          pgUrl,
          ...(options.pgBin ? { pgBin: options.pgBin } : {}),
          ...(options.ownerPid !== undefined ? { ownerPid: options.ownerPid } : {}),
          ...(options.tickMs ? { tickMs: options.tickMs } : {}),
          ...(options.vcdbMb ? { vcdbMb: options.vcdbMb } : {}),
        };
        return profile === 'vcsa-6.x' ? createSimVcsa6Appliance(applianceOptions) : createSimAppliance(applianceOptions);
      }),
    );
    for (const r of created) if (r.status === 'fulfilled') appliances.push(r.value);
    const failed = created.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;

    const secretsDir = await simSecretsDir(outDir);
    const s3Section = await simS3Section(s3, secretsDir);

    const config = {
      redis: {
        url: options.redisUrl ?? 'redis://127.0.0.1:6379',
        prefix: options.redisPrefix ?? `vcsa-sim-${randomBytes(4).toString('hex')}`,
      },
      s3: s3Section,
      quiesce: { maxConcurrent: 1 },
      spool: { dir: join(outDir, 'spool'), minFreeMiB: 16 },
      verify: { scratchUrl: pgUrl },
      targets: appliances.map((a) => ({
        name: a.name,
        profile,
        executor: { type: 'local' },
        variables: { ...a.variables },
      })),
    };
    const configPath = join(outDir, 'fleet.yaml');
    await writeFile(configPath, `# Simulated fleet written by \`vcsa-backup simulate\`; valid while it runs.\n${stringify(config)}`);

    const sim: SimJson = {
      audit: auditLog,
      s3: simS3Json(s3),
      appliances: appliances.map((a) => ({ name: a.name, vcdbUrl: a.vcdbUrl, ...('inventoryUrl' in a ? { inventoryUrl: a.inventoryUrl } : {}) })),
    };
    const simJsonPath = join(outDir, 'sim.json');
    await writeSimJson(simJsonPath, sim);

    return { outDir, configPath, simJsonPath, auditLog, appliances, sim, stop };
  } catch (err) {
    try {
      await stop();
    } catch (cleanupErr) {
      throw combineErrors(err, [cleanupErr]);
    }
    throw err;
  }
}

/** Reads the sim.json of a running `simulate` (for the demo, drills and acceptance checks). */
export async function readSimJson(path: string): Promise<SimJson> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new BackupError('SIM_JSON_INVALID', `cannot read ${path}: ${errorMessage(err)}; is \`vcsa-backup simulate\` running with --out pointing there?`, { permanent: true });
  }
  const v = value as Partial<SimJson> | null;
  if (!v || typeof v.audit !== 'string' || !v.s3 || typeof v.s3.endpoint !== 'string' || !Array.isArray(v.appliances)) {
    throw new BackupError('SIM_JSON_INVALID', `${path}: expected {"audit", "s3", "appliances"} as written by \`vcsa-backup simulate\``, { permanent: true });
  }
  return v as SimJson;
}
