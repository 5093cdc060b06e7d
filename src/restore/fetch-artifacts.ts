import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { HashingStream } from '../hashing.ts';
import type { Manifest, ManifestArtifact } from '../backup/manifest.ts';
import { DecryptionKeys } from '../crypto/key-ring.ts';
import { checkKeysOpen, gzipName, openArtifact } from '../crypto/open-artifact.ts';
import { BackupError, errorCode, errorMessage } from '../errors.ts';
import type { ObjectStore } from '../storage/object-store.ts';

const emptyKeys = new DecryptionKeys([]);

export interface FetchedArtifact {
  readonly artifact: ManifestArtifact;
  /** The dump, decompressed, on local disk. */
  readonly path: string;
  readonly rawBytes: number;
}

export interface FetchProgress {
  readonly artifact: string;
  readonly bytes: number;
  readonly totalBytes: number;
}

/**
 * Downloads every artifact of a backup into `dir`, checks each object's size and sha256 against
 * the manifest, decrypts it if it is encrypted, then decompresses it and checks the dump's own
 * size and sha256. Everything is checked before the caller touches an appliance: a missing key
 * (ENCRYPTION_IDENTITY_MISSING, ENCRYPTION_PASSPHRASE_MISSING) or a wrong one (DECRYPT_FAILED)
 * fails before any download — each encrypted object's header is read first and opened with the
 * configured keys — and a corrupted object (RESTORE_CHECKSUM_MISMATCH) before the next step.
 */
export async function fetchArtifacts(
  store: ObjectStore,
  manifest: Manifest,
  dir: string,
  options: {
    signal?: AbortSignal;
    onProgress?: (p: FetchProgress) => void;
    /** For encrypted artifacts: identities and passphrases (decryptionKeys(config.encryption)). */
    keys?: DecryptionKeys;
  } = {},
): Promise<FetchedArtifact[]> {
  const keys = options.keys ?? emptyKeys;
  await checkKeysOpen(store, manifest, keys, options.signal);
  const fetched: FetchedArtifact[] = [];
  for (const artifact of manifest.artifacts) {
    // parseManifest already holds `file` to the profile's names; this keeps a manifest that
    // reached here some other way from writing outside the work directory.
    if (basename(artifact.file) !== artifact.file || artifact.file.startsWith('.')) {
      throw new BackupError('MANIFEST_INVALID', `${artifact.key}: artifact file name ${JSON.stringify(artifact.file)} is not a plain file name; nothing was downloaded`, { permanent: true });
    }
    const gzPath = join(dir, artifact.file);
    await downloadArtifact(store, artifact, gzPath, options);

    const storedName = gzipName(artifact.file, artifact.encryption);
    const rawName = storedName.endsWith('.gz') ? storedName.slice(0, -3) : `${storedName}.raw`;
    const rawPath = join(dir, rawName);
    const rawHasher = new HashingStream();
    // Decrypted on the way to gunzip: the plaintext gzip never touches the disk.
    try {
      const gzip = await openArtifact(gzPath, artifact, keys);
      await pipeline([gzip, createGunzip(), rawHasher, createWriteStream(rawPath, { mode: 0o600 })], options.signal ? { signal: options.signal } : {});
    } catch (err) {
      if (options.signal?.aborted) throw err;
      if (errorCode(err).startsWith('DECRYPT_')) throw err;
      throw new BackupError('RESTORE_CHECKSUM_MISMATCH', `${artifact.key} matches its manifest but does not decompress (${errorMessage(err)}); restore another backup`, { permanent: true, cause: err });
    }
    // Only the dump is needed from here on; halve the disk a large restore needs.
    await rm(gzPath, { force: true });
    const rawSha = rawHasher.digest();
    if ((artifact.rawBytes !== undefined && rawHasher.bytes !== artifact.rawBytes) || (artifact.rawSha256 !== undefined && rawSha !== artifact.rawSha256)) {
      throw new BackupError(
        'RESTORE_CHECKSUM_MISMATCH',
        `${artifact.key} decompresses to ${rawHasher.bytes} bytes with sha256 ${rawSha.slice(0, 16)}…, but the dump was ${artifact.rawBytes} bytes with sha256 ${artifact.rawSha256.slice(0, 16)}…; restore another backup`,
        { permanent: true },
      );
    }
    fetched.push({ artifact, path: rawPath, rawBytes: rawHasher.bytes });
  }
  return fetched;
}

/**
 * Downloads one stored object to `path` and checks its size and sha256 against the manifest
 * (RESTORE_CHECKSUM_MISMATCH otherwise). Restore, verify and rekey read objects through this.
 */
export async function downloadArtifact(
  store: ObjectStore,
  artifact: ManifestArtifact,
  path: string,
  options: { signal?: AbortSignal; onProgress?: (p: FetchProgress) => void } = {},
): Promise<void> {
  const hasher = new HashingStream();
  if (options.onProgress) {
    const report = options.onProgress;
    hasher.on('data', () => report({ artifact: artifact.name, bytes: hasher.bytes, totalBytes: artifact.bytes }));
  }
  const body = await store.get(artifact.key, options.signal ? { signal: options.signal } : {});
  await pipeline(body, hasher, createWriteStream(path, { mode: 0o600 }), options.signal ? { signal: options.signal } : {});
  const sha256 = hasher.digest();
  if (hasher.bytes !== artifact.bytes || sha256 !== artifact.sha256) {
    throw new BackupError(
      'RESTORE_CHECKSUM_MISMATCH',
      `${artifact.key} does not match its manifest (stored ${hasher.bytes} bytes, sha256 ${sha256.slice(0, 16)}…; manifest says ${artifact.bytes} bytes, sha256 ${artifact.sha256.slice(0, 16)}…). ` +
        'The object is damaged: restore another backup (vcsa-backup list). Nothing on the appliance was touched.',
      { permanent: true, details: { key: artifact.key, bytes: hasher.bytes, sha256, expectedBytes: artifact.bytes, expectedSha256: artifact.sha256 } },
    );
  }
}
