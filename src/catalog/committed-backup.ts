import { manifestKey, type Manifest } from '../backup/manifest.ts';
import type { UploadResult } from '../backup/upload-step.ts';
import type { Logger } from '../log.ts';
import { hasCode } from '../error-codes.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { readManifest } from './catalog.ts';

/**
 * The manifest of backup `id` when it is already in the bucket (an earlier attempt committed it),
 * else null. A manifest that is there but not valid, or not this backup's, counts as not
 * committed (list/verify report that object on their own). When S3 cannot answer, the error is
 * thrown: the caller must not guess (guessing "not committed" means a second backup).
 */
export async function committedBackup(store: ObjectStore, prefix: string, target: string, id: string, logger: Logger): Promise<UploadResult | null> {
  const key = manifestKey(prefix, target, id);
  if ((await store.head(key)) === null) return null;
  let manifest: Manifest;
  try {
    manifest = await readManifest(store, key);
  } catch (err) {
    if (!hasCode(err, 'MANIFEST_INVALID')) throw err;
    logger.warn({ err, manifestKey: key }, 'the earlier attempt left a manifest that is not valid; not taking it as this backup');
    return null;
  }
  if (manifest.id !== id || manifest.target !== target) return null;
  logger.info({ backupId: id, manifestKey: key }, 'an earlier attempt committed this backup before it stopped; reporting it instead of dumping again');
  return { manifest, manifestKey: key };
}
