import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Redis } from 'ioredis';
import { listBackups, readManifest, type CatalogEntry } from '../catalog/catalog.ts';
import type { Config } from '../config/load.ts';
import { ageAlgorithm, describeAgeTarget, readAgeHeader, type AgeEncryptionInfo, type AgeTarget } from '../crypto/age-stream.ts';
import { encryptionAlgorithm as legacyAlgorithm } from '../crypto/format.ts';
import { decryptionKeys, DecryptionKeys } from '../crypto/key-ring.ts';
import { gzipName, requireKeys } from '../crypto/open-artifact.ts';
import { reencryptArtifact } from '../crypto/reencrypt.ts';
import { BackupError, ConfigError, errorCode, errorMessage } from '../errors.ts';
import { holderIdentity } from '../locks/fleet-lease.ts';
import { acquireTargetLock, targetLockTtlMs } from '../locks/target-lock.ts';
import type { Logger } from '../log.ts';
import { downloadArtifact } from '../restore/fetch-artifacts.ts';
import { createWorkDir } from '../restore/work-dir.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { encryptedSuffix, encryptionTarget } from './encrypt.ts';
import { backupIdFor, backupPrefix, type ArtifactEncryption, sseRecord, type Manifest, type ManifestArtifact } from './manifest.ts';
import { hasCode } from '../error-codes.ts';

/**
 * `rekey`: re-encrypts stored backups to the current encryption settings — after recipients were
 * added or removed, the passphrase changed, or to convert backups of the old
 * aes-256-gcm-stream-v1 format (and unencrypted ones) to age. Per backup, under the target lock:
 *
 *   re-read the manifest → remove leftovers of an interrupted rekey → for each artifact:
 *   download (checked against the manifest) → decrypt → age-encrypt to the current recipients
 *   (the dump's sha256 checked on the way) → upload under a new key (`<id>/rekey-<time>/…`,
 *   verified by the store) → the manifest unchanged meanwhile? → write the new manifest (the
 *   switch) → its objects still there? → delete the old objects.
 *
 * Until the switch the old manifest names only old objects, which are all there; after it, the
 * new manifest names only new ones, which are all there. So `list`, `restore` and `verify` see a
 * complete backup at every instant; a crash leaves unreferenced objects, removed by the next
 * rekey of that backup (or with the backup, by retention). A restore that downloaded the old
 * manifest just before the switch may find the old objects gone: it fails before anything is
 * stopped, and succeeds when run again.
 */

export interface RekeyInput {
  readonly config: Config;
  readonly target: string;
  /** A backup id, 'latest', or 'all' (default). */
  readonly backup?: string;
  readonly store: ObjectStore;
  /** For the target lock; not needed with dryRun. */
  readonly redis?: Redis;
  readonly logger: Logger;
  readonly dryRun?: boolean;
  readonly signal?: AbortSignal;
  /** Identifies this process in the lock table. */
  readonly holderId?: string;
  /** Where objects are downloaded; default config.spool.dir. */
  readonly workRoot?: string;
  readonly onProgress?: (event: RekeyProgress) => void;
}

export interface RekeyProgress {
  readonly id: string;
  readonly step: 'lock' | 'download' | 'encrypt' | 'upload' | 'switch' | 'cleanup';
  readonly artifact?: string;
}

export interface RekeyedArtifact {
  readonly name: string;
  readonly from: string;
  readonly to: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly checked: 'decrypted' | 'stored bytes';
}

export interface BackupRekey {
  readonly id: string;
  /** rekeyed; current (nothing to do); would-rekey (dry run); gone (deleted meanwhile); failed. */
  readonly action: 'rekeyed' | 'current' | 'would-rekey' | 'gone' | 'failed';
  /** Why it needed re-encrypting ("encrypted to age1a…; now age1a…, age1b…"), or why not. */
  readonly reason: string;
  readonly artifacts: RekeyedArtifact[];
  /** Objects deleted: the old ones after the switch, and leftovers of an interrupted rekey. */
  readonly removed: string[];
  readonly error?: { readonly code: string; readonly message: string };
}

export interface RekeyResult {
  readonly target: string;
  readonly dryRun: boolean;
  /** What backups are encrypted to now. */
  readonly to: AgeEncryptionInfo;
  readonly backups: BackupRekey[];
}

/** One line about how an artifact is stored, public facts only. */
export function describeEncryption(enc: ArtifactEncryption | null | undefined): string {
  if (!enc) return 'not encrypted';
  if (enc.algorithm === legacyAlgorithm) return `${legacyAlgorithm} (passphrase)`;
  if ((enc.algorithm as string) !== ageAlgorithm) return String(enc.algorithm);
  return enc.passphrase ? 'age, scrypt passphrase' : `age to ${enc.recipients.join(', ')}`;
}

export async function rekeyTarget(input: RekeyInput): Promise<RekeyResult> {
  const { config, target } = input;
  if (!config.encryption) {
    throw new ConfigError(['encryption: rekey re-encrypts backups to encryption.recipients (or encryption.passphrase), and neither is configured']);
  }
  const to = encryptionTarget(config.encryption);
  const info = describeAgeTarget(to);
  const keys = decryptionKeys(config.encryption);
  const logger = input.logger.child({ target, purpose: 'rekey' });
  const entries = await selectBackups(input);
  const backups: BackupRekey[] = [];
  for (const entry of entries) {
    input.signal?.throwIfAborted();
    try {
      backups.push(input.dryRun ? await planOne(input, entry, to, info) : await rekeyOne(input, entry, to, info, keys, logger.child({ backupId: entry.id })));
    } catch (err) {
      if (input.signal?.aborted || err instanceof ConfigError) throw err;
      logger.error({ err, backupId: entry.id }, 'rekey of a backup failed; it is left as it was');
      backups.push({ id: entry.id, action: 'failed', reason: errorMessage(err), artifacts: [], removed: [], error: { code: errorCode(err), message: errorMessage(err) } });
    }
  }
  return { target, dryRun: input.dryRun ?? false, to: info, backups };
}

async function selectBackups(input: RekeyInput): Promise<CatalogEntry[]> {
  const wanted = input.backup ?? 'all';
  const entries = await listBackups(input.store, input.config.s3.prefix, input.target, { logger: input.logger });
  if (wanted === 'all') return entries;
  if (entries.length === 0) {
    throw new BackupError('BACKUP_NOT_FOUND', `no complete backup of ${input.target} in ${input.store.description}`, { permanent: true });
  }
  if (wanted === 'latest') return entries.slice(0, 1);
  const found = entries.find((e) => e.id === wanted);
  if (!found) {
    throw new BackupError('BACKUP_NOT_FOUND', `--backup: no complete backup "${wanted}" of ${input.target}; available: ${entries.slice(0, 10).map((e) => e.id).join(', ')}, or "latest" or "all"`, { permanent: true });
  }
  return [found];
}

/**
 * Why an artifact is not encrypted the way new backups are, or null when it is. With a
 * passphrase the header is read: only opening it says whether it is the current passphrase.
 */
async function staleReason(store: ObjectStore, artifact: ManifestArtifact, to: AgeTarget, info: AgeEncryptionInfo, current: DecryptionKeys | null): Promise<string | null> {
  const enc = artifact.encryption;
  const now = describeEncryption(info);
  if (!enc || enc.algorithm !== ageAlgorithm) return `${describeEncryption(enc)}; now ${now}`;
  if ('recipients' in to) {
    const same = !enc.passphrase && enc.recipients.length === to.recipients.length && to.recipients.every((r) => enc.recipients.includes(r));
    return same ? null : `${describeEncryption(enc)}; now ${now}`;
  }
  if (!enc.passphrase) return `${describeEncryption(enc)}; now ${now}`;
  if (!current) throw new Error('unreachable: passphrase target without its key ring');
  try {
    await current.fileKey(await readAgeHeader(await store.get(artifact.key), artifact.key), artifact.key, enc);
    return null;
  } catch (err) {
    if (hasCode(err, 'DECRYPT_FAILED')) return 'age with an older passphrase; now encryption.passphrase';
    throw err;
  }
}

async function assess(input: RekeyInput, manifest: Manifest, to: AgeTarget, info: AgeEncryptionInfo): Promise<string | null> {
  const current = 'passphrase' in to ? new DecryptionKeys([to.passphrase]) : null;
  const reasons = new Set<string>();
  for (const a of manifest.artifacts) {
    const why = await staleReason(input.store, a, to, info, current);
    if (why) reasons.add(why);
  }
  return reasons.size > 0 ? [...reasons].join('; ') : null;
}

/** Objects under the backup's prefix that its manifest does not name: leftovers of an interrupted rekey. */
async function leftovers(store: ObjectStore, manifestKey: string, manifest: Manifest, prefix: string): Promise<string[]> {
  const named = new Set([manifestKey, ...manifest.artifacts.map((a) => a.key)]);
  const found: string[] = [];
  for await (const o of store.list(backupPrefix(prefix, manifest.target, manifest.id))) if (!named.has(o.key)) found.push(o.key);
  return found;
}

async function planOne(input: RekeyInput, entry: CatalogEntry, to: AgeTarget, info: AgeEncryptionInfo): Promise<BackupRekey> {
  const reason = await assess(input, entry.manifest, to, info);
  const removed = await leftovers(input.store, entry.manifestKey, entry.manifest, input.config.s3.prefix);
  if (!reason) return { id: entry.id, action: 'current', reason: `already ${describeEncryption(info)}`, artifacts: [], removed };
  return { id: entry.id, action: 'would-rekey', reason, artifacts: [], removed: [...removed, ...entry.manifest.artifacts.map((a) => a.key)] };
}

async function rekeyOne(input: RekeyInput, entry: CatalogEntry, to: AgeTarget, info: AgeEncryptionInfo, keys: DecryptionKeys, logger: Logger): Promise<BackupRekey> {
  const { config, store, signal } = input;
  const emit = (step: RekeyProgress['step'], artifact?: string): void => input.onProgress?.({ id: entry.id, step, ...(artifact ? { artifact } : {}) });
  if (!input.redis) throw new Error('unreachable: rekey without Redis for the target lock');
  emit('lock');
  // One backup at a time under the lock, so a nightly backup waiting for it gets its turn between two.
  const lock = await acquireTargetLock(input.redis, {
    prefix: config.redis.prefix,
    target: input.target,
    holder: input.holderId ?? holderIdentity('rekey'),
    ttlMs: targetLockTtlMs(config),
    logger,
    purpose: 'rekey',
    waitMs: config.quiesce.waitSeconds * 1000,
    ...(signal ? { signal } : {}),
  });
  const work = await createWorkDir(input.workRoot ?? config.spool.dir, 'rekey');
  try {
    // Read again under the lock: a prune or an earlier rekey may have changed it since the listing.
    const before = await readManifest(store, entry.manifestKey).catch((err: unknown) => {
      if (hasCode(err, 'OBJECT_NOT_FOUND')) return null;
      throw err;
    });
    if (!before) return { id: entry.id, action: 'gone', reason: 'deleted since it was listed (retention?)', artifacts: [], removed: [] };
    const stale = await assess(input, before, to, info);
    const removed = await leftovers(store, entry.manifestKey, before, config.s3.prefix);
    if (removed.length > 0) {
      emit('cleanup');
      await store.deleteMany(removed);
      logger.info({ keys: removed }, 'removed objects the manifest does not name (an interrupted rekey)');
    }
    if (!stale) return { id: entry.id, action: 'current', reason: `already ${describeEncryption(info)}`, artifacts: [], removed };
    requireKeys(before, keys);

    const stamp = backupIdFor(new Date());
    const uploaded: string[] = [];
    const artifacts: ManifestArtifact[] = [];
    const report: RekeyedArtifact[] = [];
    let switched = false;
    try {
      for (const artifact of before.artifacts) {
        signal?.throwIfAborted();
        const local = join(work.dir, artifact.file);
        emit('download', artifact.name);
        await downloadArtifact(store, artifact, local, signal ? { signal } : {});
        emit('encrypt', artifact.name);
        const file = `${gzipName(artifact.file, artifact.encryption)}${encryptedSuffix}`;
        const localNew = join(work.dir, `new-${file}`);
        const made = await reencryptArtifact(local, artifact, keys, to, info, localNew, signal);
        emit('upload', artifact.name);
        const key = `${backupPrefix(config.s3.prefix, input.target, before.id)}rekey-${stamp}/${file}`;
        uploaded.push(key);
        const put = await store.putFile(key, localNew, { contentType: 'application/octet-stream', expectedSha256: made.sha256, ...(signal ? { signal } : {}) });
        artifacts.push({ ...artifact, file, key, bytes: put.bytes, sha256: put.sha256, encryption: info });
        report.push({ name: artifact.name, from: artifact.key, to: key, bytes: put.bytes, sha256: put.sha256, checked: made.checked });
        logger.info({ artifact: artifact.name, from: artifact.key, to: key, checked: made.checked }, 're-encrypted, uploaded and verified');
      }

      emit('switch');
      const now = await readManifest(store, entry.manifestKey).catch(() => null);
      if (!now || !isDeepStrictEqual(now, before)) {
        throw new BackupError('REKEY_CONFLICT', `the manifest of ${entry.manifestKey} ${now ? 'changed' : 'was deleted'} while its backup was re-encrypted (a retention run or another rekey?); nothing was switched — run rekey again`);
      }
      // The new objects were written with today's s3.serverSideEncryption: record that, not the old.
      const { serverSideEncryption: _old, ...kept } = before;
      const manifest: Manifest = { ...kept, artifacts, rekeyedAt: new Date().toISOString(), ...sseRecord(config.s3) };
      await store.putBytes(entry.manifestKey, Buffer.from(JSON.stringify(manifest, null, 2)), { contentType: 'application/json', ...(signal ? { signal } : {}) });
      switched = true;
      for (const key of uploaded) {
        if (!(await store.head(key))) {
          // Deleted under us: the backup was being removed (a prune does manifest first, then
          // objects). A manifest naming missing objects must not stay.
          await store.deleteMany([entry.manifestKey]);
          throw new BackupError('REKEY_CONFLICT', `${key} vanished right after the switch: backup ${before.id} was being deleted meanwhile (retention?); its new manifest was withdrawn`);
        }
      }
    } catch (err) {
      if (!switched) await store.deleteMany(uploaded).catch((cleanupErr: unknown) => logger.warn({ err: cleanupErr, keys: uploaded }, 'could not remove the new objects; the next rekey of this backup will'));
      throw err;
    }

    emit('cleanup');
    const old = before.artifacts.map((a) => a.key).filter((k) => !uploaded.includes(k));
    await store.deleteMany(old);
    logger.info({ removed: old, reason: stale }, 'backup re-encrypted; old objects removed');
    return { id: entry.id, action: 'rekeyed', reason: stale, artifacts: report, removed: [...removed, ...old] };
  } finally {
    await work.remove();
    await lock.release().catch((err: unknown) => logger.warn({ err }, 'releasing the target lock failed; it expires on its own'));
  }
}
