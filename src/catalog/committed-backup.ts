import { manifestKey } from '../backup/manifest.ts';
import type { UploadResult } from '../backup/upload-step.ts';
import type { Logger } from '../log.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { readManifest } from './catalog.ts';

/**
 * The manifest of backup `id` when it is already in the bucket (an earlier attempt committed it),
 * else null. A manifest that cannot be read or parsed counts as not committed: the job goes on as
 * if it were absent, and list/verify report that object on their own.
 */
export async function committedBackup(store: ObjectStore, prefix: string, target: string, id: string, logger: Logger): Promise<UploadResult | null> {
  const key = manifestKey(prefix, target, id);
  try {
    if ((await store.head(key)) === null) return null;
    const manifest = await readManifest(store, key);
    if (manifest.id !== id || manifest.target !== target) return null;
    logger.info({ backupId: id, manifestKey: key }, 'an earlier attempt committed this backup before it stopped; reporting it instead of dumping again');
    return { manifest, manifestKey: key };
  } catch (err) {
    logger.warn({ err, manifestKey: key }, 'could not check whether an earlier attempt committed this backup; going on without it');
    return null;
  }
}
