/**
 * A second real S3 server for tests: OpenStack Swift's s3api (Debian's python3-swift, installed
 * by scripts/test-setup.sh), run by swift-s3.py on a free loopback port. Use it where fauxqs
 * falls short: it lists multipart uploads (with paging and real initiation times), verifies
 * signatures, and refuses DeleteObjects without Content-MD5 (so the one-by-one fallback runs).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import type { EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import { rawS3Client } from './s3.ts';

/** Debian's interpreter: python3-swift is installed for it, whatever python3 comes first in PATH. */
const python = '/usr/bin/python3';
const launcher = fileURLToPath(new URL('./swift-s3.py', import.meta.url));

export async function startSwiftS3(options: { bucket?: string } = {}): Promise<EmbeddedS3> {
  const dir = await mkdtemp(join(tmpdir(), 'swift-s3-'));
  const child = spawn(python, [launcher, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<never>((_, reject) => {
    child.once('error', reject);
    child.once('exit', (code) =>
      reject(new Error(`Swift s3api exited (${code}) before it was ready; is python3-swift installed (bash scripts/test-setup.sh)? ${stderr}`)),
    );
  });
  const ready = new Promise<{ endpoint: string; accessKeyId: string; secretAccessKey: string }>((resolve) => {
    createInterface({ input: child.stdout }).once('line', (line) => resolve(JSON.parse(line) as { endpoint: string; accessKeyId: string; secretAccessKey: string }));
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await gone;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const server = await Promise.race([ready, exited]);
    const s3 = { ...server, bucket: options.bucket ?? 'vcsa-backups', region: 'us-east-1', stop };
    const raw = rawS3Client(s3);
    try {
      await raw.send(new CreateBucketCommand({ Bucket: s3.bucket }));
    } finally {
      raw.destroy();
    }
    return s3;
  } catch (err) {
    await stop();
    throw err;
  }
}
