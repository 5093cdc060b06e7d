import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BackupError, errorMessage } from '../errors.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../storage/embedded-s3.ts';

/** The S3 endpoint a simulated fleet writes to: the embedded one, or an external one given by the caller. */
export interface SimS3 {
  /** Set when this fleet started the embedded endpoint (and so stops it). */
  readonly embedded?: EmbeddedS3;
  readonly external: boolean;
  readonly endpoint: string;
  readonly bucket: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

export interface SimS3Options {
  readonly s3Endpoint?: string;
  readonly s3Bucket?: string;
  readonly s3Region?: string;
  readonly s3AccessKeyId?: string;
  readonly s3SecretAccessKey?: string;
}

export async function startSimS3(options: SimS3Options): Promise<SimS3> {
  const bucket = options.s3Bucket ?? 'vcsa-backups';
  if (options.s3Endpoint) {
    return {
      external: true,
      endpoint: options.s3Endpoint,
      bucket,
      region: options.s3Region ?? 'us-east-1',
      accessKeyId: options.s3AccessKeyId ?? 'vcsa-backup-sim',
      secretAccessKey: options.s3SecretAccessKey ?? 'vcsa-backup-sim-secret',
    };
  }
  const embedded = await startEmbeddedS3({ bucket });
  const { endpoint, region, accessKeyId, secretAccessKey } = embedded;
  return { embedded, external: false, endpoint, bucket: embedded.bucket, region, accessKeyId, secretAccessKey };
}

/** A private (0700) directory for the fleet's secret files. */
export async function simSecretsDir(outDir: string): Promise<string> {
  const dir = join(outDir, 'secrets');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  return dir;
}

/** fleet.yaml's `s3` section, its keys written to files under `secretsDir` (0600) and referenced, never inline. */
export async function simS3Section(s3: SimS3, secretsDir: string): Promise<Record<string, unknown>> {
  const accessKeyFile = join(secretsDir, 's3-access-key-id');
  const secretKeyFile = join(secretsDir, 's3-secret-access-key');
  await writeFile(accessKeyFile, `${s3.accessKeyId}\n`, { mode: 0o600 });
  await writeFile(secretKeyFile, `${s3.secretAccessKey}\n`, { mode: 0o600 });
  return {
    endpoint: s3.endpoint,
    bucket: s3.bucket,
    region: s3.region,
    forcePathStyle: true,
    checksums: 'when-required',
    accessKeyId: { file: accessKeyFile },
    secretAccessKey: { file: secretKeyFile },
    ...(s3.external ? { createBucket: true } : {}),
  };
}

/** sim.json's `s3` entry: what tests and tools need to read the bucket. */
export function simS3Json(s3: SimS3): { endpoint: string; bucket: string; region: string; accessKeyId: string; secretAccessKey: string } {
  return { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey };
}

/** Writes sim.json last and atomically enough for pollers: its presence means "the fleet is up". */
export async function writeSimJson(path: string, sim: unknown): Promise<void> {
  await writeFile(`${path}.tmp`, `${JSON.stringify(sim, null, 2)}\n`);
  await rename(`${path}.tmp`, path);
}

/** Stops every part once (later calls share the first), and reports every part that failed. */
export function stopOnce(what: string, parts: () => readonly (() => Promise<void>)[]): () => Promise<void> {
  let stopped: Promise<void> | undefined;
  return () => {
    stopped ??= (async () => {
      const results = await Promise.allSettled(parts().map((stop) => stop()));
      const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      if (failures.length > 0) throw new BackupError('SIM_STOP_FAILED', `stopping ${what}: ${failures.map(errorMessage).join('; ')}`);
    })();
    return stopped;
  };
}
