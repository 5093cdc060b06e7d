import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { HashingStream } from '../backup/hashing.ts';
import type { Manifest, ManifestArtifact } from '../backup/manifest.ts';
import type { Secret } from '../config/secret.ts';
import { createDecryptStream } from '../crypto/decrypt-stream.ts';
import { encryptionAlgorithm } from '../crypto/format.ts';
import { BackupError, errorCode, errorMessage } from '../errors.ts';
import type { ObjectStore } from '../storage/object-store.ts';

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
 * size and sha256. Everything is checked before the caller touches an appliance: a corrupted
 * object (RESTORE_CHECKSUM_MISMATCH), a wrong passphrase (DECRYPT_FAILED) or a missing one
 * (ENCRYPTION_PASSPHRASE_MISSING, before any download) fails here, with nothing stopped.
 */
export async function fetchArtifacts(
  store: ObjectStore,
  manifest: Manifest,
  dir: string,
  options: {
    signal?: AbortSignal;
    onProgress?: (p: FetchProgress) => void;
    /** For encrypted artifacts: encryption.passphrase, then encryption.previousPassphrases. */
    passphrases?: readonly Secret[];
  } = {},
): Promise<FetchedArtifact[]> {
  const passphrases = options.passphrases ?? [];
  for (const artifact of manifest.artifacts) {
    if (!artifact.encryption) continue;
    if (artifact.encryption.algorithm !== encryptionAlgorithm) {
      throw new BackupError('RESTORE_UNSUPPORTED', `${artifact.key} is encrypted with ${artifact.encryption.algorithm}; this version reads only ${encryptionAlgorithm}`, { permanent: true });
    }
    if (passphrases.length === 0) {
      throw new BackupError(
        'ENCRYPTION_PASSPHRASE_MISSING',
        `backup ${manifest.target}/${manifest.id} is encrypted (${artifact.key}), but the config has no encryption.passphrase; ` +
          'set encryption.passphrase (or encryption.previousPassphrases) to the passphrase it was taken with. Nothing on the appliance was touched.',
        { permanent: true },
      );
    }
  }
  const fetched: FetchedArtifact[] = [];
  for (const artifact of manifest.artifacts) {
    const gzPath = join(dir, artifact.file);
    const hasher = new HashingStream();
    if (options.onProgress) {
      const report = options.onProgress;
      hasher.on('data', () => report({ artifact: artifact.name, bytes: hasher.bytes, totalBytes: artifact.bytes }));
    }
    const body = await store.get(artifact.key, options.signal ? { signal: options.signal } : {});
    await pipeline(body, hasher, createWriteStream(gzPath, { mode: 0o600 }), options.signal ? { signal: options.signal } : {});
    const sha256 = hasher.digest();
    if (hasher.bytes !== artifact.bytes || sha256 !== artifact.sha256) {
      throw new BackupError(
        'RESTORE_CHECKSUM_MISMATCH',
        `${artifact.key} does not match its manifest (stored ${hasher.bytes} bytes, sha256 ${sha256.slice(0, 16)}…; manifest says ${artifact.bytes} bytes, sha256 ${artifact.sha256.slice(0, 16)}…). ` +
          'The object is damaged: restore another backup (vcsa-backup list). Nothing on the appliance was touched.',
        { permanent: true, details: { key: artifact.key, bytes: hasher.bytes, sha256, expectedBytes: artifact.bytes, expectedSha256: artifact.sha256 } },
      );
    }

    const storedName = artifact.encryption && artifact.file.endsWith('.enc') ? artifact.file.slice(0, -4) : artifact.file;
    const rawName = storedName.endsWith('.gz') ? storedName.slice(0, -3) : `${storedName}.raw`;
    const rawPath = join(dir, rawName);
    const rawHasher = new HashingStream();
    // Decrypted on the way to gunzip: the plaintext gzip never touches the disk.
    const decrypt = artifact.encryption ? [createDecryptStream(passphrases, { label: artifact.key })] : [];
    try {
      await pipeline([createReadStream(gzPath), ...decrypt, createGunzip(), rawHasher, createWriteStream(rawPath, { mode: 0o600 })], options.signal ? { signal: options.signal } : {});
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
