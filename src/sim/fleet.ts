import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { BackupError, combineErrors, errorMessage } from '../errors.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../storage/embedded-s3.ts';
import { createSimAppliance, type SimAppliance } from './appliance.ts';
import { defaultPgUrl } from './postgres.ts';

export interface SimFleetOptions {
  readonly count: number;
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
  readonly appliances: readonly { readonly name: string; readonly vcdbUrl: string; readonly inventoryUrl: string }[];
}

export interface SimFleet {
  readonly outDir: string;
  readonly configPath: string;
  readonly simJsonPath: string;
  readonly auditLog: string;
  readonly appliances: readonly SimAppliance[];
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

  const appliances: SimAppliance[] = [];
  let s3: EmbeddedS3 | undefined;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      const results = await Promise.allSettled([...appliances.map((a) => a.destroy()), ...(s3 ? [s3.stop()] : [])]);
      const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      if (failures.length > 0) throw new BackupError('SIM_STOP_FAILED', `stopping the simulated fleet: ${failures.map(errorMessage).join('; ')}`);
    })();
    return stopped;
  };

  try {
    let endpoint: string;
    let bucket = options.s3Bucket ?? 'vcsa-backups';
    let region = options.s3Region ?? 'us-east-1';
    let accessKeyId = options.s3AccessKeyId ?? 'vcsa-backup-sim';
    let secretAccessKey = options.s3SecretAccessKey ?? 'vcsa-backup-sim-secret';
    if (options.s3Endpoint) {
      endpoint = options.s3Endpoint;
    } else {
      s3 = await startEmbeddedS3({ bucket });
      ({ endpoint, bucket, region, accessKeyId, secretAccessKey } = s3);
    }

    const created = await Promise.allSettled(
      applianceNames(options.count).map((name) =>
        createSimAppliance({
          name,
          baseDir: join(outDir, 'appliances'),
          auditLog,
          pgUrl,
          ...(options.pgBin ? { pgBin: options.pgBin } : {}),
          ...(options.ownerPid !== undefined ? { ownerPid: options.ownerPid } : {}),
          ...(options.tickMs ? { tickMs: options.tickMs } : {}),
          ...(options.vcdbMb ? { vcdbMb: options.vcdbMb } : {}),
        }),
      ),
    );
    for (const r of created) if (r.status === 'fulfilled') appliances.push(r.value);
    const failed = created.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;

    const secretsDir = join(outDir, 'secrets');
    await mkdir(secretsDir, { recursive: true, mode: 0o700 });
    await chmod(secretsDir, 0o700);
    const accessKeyFile = join(secretsDir, 's3-access-key-id');
    const secretKeyFile = join(secretsDir, 's3-secret-access-key');
    await writeFile(accessKeyFile, `${accessKeyId}\n`, { mode: 0o600 });
    await writeFile(secretKeyFile, `${secretAccessKey}\n`, { mode: 0o600 });

    const config = {
      redis: {
        url: options.redisUrl ?? 'redis://127.0.0.1:6379',
        prefix: options.redisPrefix ?? `vcsa-sim-${randomBytes(4).toString('hex')}`,
      },
      s3: {
        endpoint,
        bucket,
        region,
        forcePathStyle: true,
        checksums: 'when-required',
        accessKeyId: { file: accessKeyFile },
        secretAccessKey: { file: secretKeyFile },
        ...(options.s3Endpoint ? { createBucket: true } : {}),
      },
      quiesce: { maxConcurrent: 1 },
      spool: { dir: join(outDir, 'spool'), minFreeMiB: 16 },
      verify: { scratchUrl: pgUrl },
      targets: appliances.map((a) => ({
        name: a.name,
        profile: 'vcsa-5.5',
        executor: { type: 'local' },
        variables: { ROOT: a.variables.ROOT, SERVICE: a.variables.SERVICE, INVSVC_DB: a.variables.INVSVC_DB },
      })),
    };
    const configPath = join(outDir, 'fleet.yaml');
    await writeFile(configPath, `# Simulated fleet written by \`vcsa-backup simulate\`; valid while it runs.\n${stringify(config)}`);

    const sim: SimJson = {
      audit: auditLog,
      s3: { endpoint, bucket, region, accessKeyId, secretAccessKey },
      appliances: appliances.map((a) => ({ name: a.name, vcdbUrl: a.vcdbUrl, inventoryUrl: a.inventoryUrl })),
    };
    const simJsonPath = join(outDir, 'sim.json');
    // Written last and atomically enough for pollers: sim.json means "the fleet is up".
    await writeFile(`${simJsonPath}.tmp`, `${JSON.stringify(sim, null, 2)}\n`);
    await rename(`${simJsonPath}.tmp`, simJsonPath);

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
