import { startFauxqs } from 'fauxqs';

/**
 * An S3-compatible endpoint in this process (fauxqs: in-memory, no auth, path style), for the
 * demo, `simulate` and tests. Anything stored is lost when it stops.
 */
export interface EmbeddedS3 {
  readonly endpoint: string;
  readonly bucket: string;
  readonly region: string;
  /** fauxqs checks no credentials; these are placeholders the SDK needs to sign requests. */
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  stop(): Promise<void>;
}

export async function startEmbeddedS3(options: { port?: number; host?: string; bucket?: string } = {}): Promise<EmbeddedS3> {
  const host = options.host ?? '127.0.0.1';
  const server = await startFauxqs({ port: options.port ?? 0, host, logger: false });
  const bucket = options.bucket ?? 'vcsa-backups';
  const endpoint = `http://${host}:${server.port}`;
  // Create the bucket with a plain request, so this file does not depend on the S3 client setup.
  const res = await fetch(`${endpoint}/${bucket}`, { method: 'PUT' });
  if (!res.ok && res.status !== 409) throw new Error(`embedded S3: cannot create bucket ${bucket}: HTTP ${res.status}`);
  return {
    endpoint,
    bucket,
    region: 'us-east-1',
    accessKeyId: 'vcsa-backup-sim',
    secretAccessKey: 'vcsa-backup-sim-secret',
    stop: () => server.stop(),
  };
}
