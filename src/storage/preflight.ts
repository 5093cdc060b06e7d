import { randomBytes } from 'node:crypto';
import { BackupError, errorCode, errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ObjectStore } from './object-store.ts';

/**
 * S3 preflight: before a job stops anything, prove the bucket takes a backup — credentials
 * accepted, bucket there, and a small object written, read back and deleted under the key
 * prefix (what the IAM policy grants). A bad endpoint, bucket or key then fails the job with
 * nothing touched, instead of after the appliance was stopped and started for a dump that cannot
 * be uploaded. A success is remembered for `preflightCacheMs`, so a fleet's run costs one round
 * trip per worker, not one per appliance.
 */
export const preflightCacheMs = 60_000;

/** Preflight objects live beside the targets' folders, never inside one (list and retention ignore them). */
export const preflightFolder = '.vcsa-backup-preflight';

const passed = new Map<string, number>();

/**
 * With `deletes: false` (a bucket whose policy has no delete right, e.g. Object Lock retention) the
 * probe is one fixed key, overwritten each time and never deleted: a delete would be refused.
 */
export async function preflightS3(store: ObjectStore, s3: { readonly prefix: string; readonly deletes: boolean }, logger: Logger, now: () => number = Date.now): Promise<void> {
  const prefix = s3.prefix;
  const cacheKey = `${store.description}\u0000${prefix}`;
  const last = passed.get(cacheKey);
  if (last !== undefined && now() - last < preflightCacheMs) return;
  const base = prefix.replace(/^\/+|\/+$/g, '');
  const key = `${base === '' ? '' : `${base}/`}${preflightFolder}/${s3.deletes ? randomBytes(8).toString('hex') : 'probe'}`;
  const body = Buffer.from(`vcsa-backup preflight ${new Date(now()).toISOString()}\n`);
  let step = 'write';
  try {
    await store.putBytes(key, body, { contentType: 'text/plain' });
    step = 'read back';
    const back = await store.getBytes(key);
    if (!back.equals(body)) throw new BackupError('S3_PREFLIGHT_FAILED', `read back ${back.length} bytes that differ from the ${body.length} written`);
    if (s3.deletes) {
      step = 'delete';
      await store.deleteMany([key]);
    }
  } catch (err) {
    // A half-done preflight may leave its small object; try once, quietly.
    if (step !== 'write' && s3.deletes) await store.deleteMany([key]).catch(() => undefined);
    const cause = errorCode(err);
    throw new BackupError(
      'S3_PREFLIGHT_FAILED',
      `S3 preflight failed at ${step} of ${key} in ${store.description} (${cause}: ${errorMessage(err)}); nothing was stopped. Check s3.endpoint, s3.bucket, s3.prefix and the credentials (and that the policy allows put, get and delete under the prefix)`,
      { cause: err, permanent: err instanceof BackupError && err.permanent, details: { step, cause } },
    );
  }
  passed.set(cacheKey, now());
  logger.debug({ key }, 'S3 preflight passed: write, read and delete under the prefix');
}

/** For tests: forget earlier successes. */
export function forgetPreflights(): void {
  passed.clear();
}
