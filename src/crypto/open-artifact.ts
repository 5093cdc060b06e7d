import { createReadStream } from 'node:fs';
import { pipeline, type Readable } from 'node:stream';
import type { ArtifactEncryption, Manifest, ManifestArtifact } from '../backup/manifest.ts';
import type { Secret } from '../config/secret.ts';
import { BackupError } from '../errors.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { ageAlgorithm, openAgeFile, readAgeHeader, type AgeEncryptionInfo } from './age-stream.ts';
import { createDecryptStream } from './decrypt-stream.ts';
import { encryptionAlgorithm as legacyAlgorithm } from './format.ts';
import type { DecryptionKeys } from './key-ring.ts';

/**
 * Opening a stored artifact whatever its encryption: none (gzip as stored), age, or the old
 * aes-256-gcm-stream-v1 format (read-only: backups taken before age stay restorable until
 * `rekey` converts them). Used by restore and verify (fetch-artifacts) and by rekey.
 */

/** Stored file name → the gzip's name: "postgres.sql.gz.age" → "postgres.sql.gz". */
export function gzipName(file: string, encryption: ArtifactEncryption | null | undefined): string {
  if (!encryption) return file;
  return file.replace(/\.(age|enc)$/, '');
}

function ageInfo(encryption: ArtifactEncryption | null | undefined): AgeEncryptionInfo | null {
  return encryption?.algorithm === ageAlgorithm ? encryption : null;
}

/**
 * Before anything is downloaded: every encrypted artifact is in a format this version reads and
 * some configured key could open it — a passphrase for passphrase-encrypted ones, an identity
 * for those encrypted to recipients. Says which setting is missing.
 */
export function requireKeys(manifest: Manifest, keys: DecryptionKeys): void {
  const backup = `backup ${manifest.target}/${manifest.id}`;
  for (const artifact of manifest.artifacts) {
    const enc = artifact.encryption;
    if (!enc) continue;
    const algorithm = enc.algorithm as string;
    if (algorithm !== ageAlgorithm && algorithm !== legacyAlgorithm) {
      throw new BackupError('RESTORE_UNSUPPORTED', `${artifact.key} is encrypted with ${algorithm}; this version reads ${ageAlgorithm} and ${legacyAlgorithm}`, { permanent: true });
    }
    const age = ageInfo(enc);
    if ((!age || age.passphrase) && keys.passphrases.length === 0) {
      throw new BackupError(
        'ENCRYPTION_PASSPHRASE_MISSING',
        `${backup} is encrypted with a passphrase (${artifact.key}, ${age ? 'age scrypt' : legacyAlgorithm}), but the config has no encryption.passphrase; ` +
          'set encryption.passphrase (or encryption.previousPassphrases) to the passphrase it was taken with. Nothing on the appliance was touched.',
        { permanent: true },
      );
    }
    if (age && !age.passphrase && !keys.hasIdentities) {
      throw new BackupError(
        'ENCRYPTION_IDENTITY_MISSING',
        `${backup} is encrypted to ${age.recipients.join(', ')} (${artifact.key}), but the config has no encryption.identities; ` +
          'add the age key file of one of those recipients, e.g. encryption.identities: [{ file: /etc/vcsa-backup/age-key.txt }]. Nothing on the appliance was touched.',
        { permanent: true },
      );
    }
  }
}

/**
 * Reads just the start of every encrypted object and checks that a configured key opens it:
 * the age header (unwrapping its file key, which the keys remember for the download), or the
 * first chunk of the old format. A wrong identity or passphrase fails here, before gigabytes
 * are downloaded and long before anything is stopped.
 */
export async function checkKeysOpen(store: ObjectStore, manifest: Manifest, keys: DecryptionKeys, signal?: AbortSignal): Promise<void> {
  requireKeys(manifest, keys);
  for (const artifact of manifest.artifacts) {
    const enc = artifact.encryption;
    if (!enc) continue;
    const body = await store.get(artifact.key, signal ? { signal } : {});
    const age = ageInfo(enc);
    if (age) await keys.fileKey(await readAgeHeader(body, artifact.key), artifact.key, age);
    else await firstChunkOpens(body, keys.passphrases, artifact.key);
  }
}

/** The old format: the first chunk authenticates under one of the passphrases (or the stream fails). */
async function firstChunkOpens(body: Readable, passphrases: readonly Secret[], label: string): Promise<void> {
  const decrypt = createDecryptStream(passphrases, { label });
  try {
    await new Promise<void>((resolve, reject) => {
      decrypt.once('data', () => resolve());
      decrypt.once('end', () => resolve());
      decrypt.once('error', reject);
      body.once('error', reject);
      body.pipe(decrypt);
    });
  } finally {
    body.destroy();
    decrypt.destroy();
  }
}

/**
 * The stored artifact at `path` (already checked against its manifest's sha256), as the gzip
 * stream it holds: decrypted on the way, never written to disk in the clear. Decryption errors
 * (DECRYPT_FAILED, DECRYPT_BAD_FORMAT) surface as the stream's error.
 */
export async function openArtifact(path: string, artifact: ManifestArtifact, keys: DecryptionKeys): Promise<Readable> {
  const enc = artifact.encryption;
  if (!enc) return createReadStream(path);
  const age = ageInfo(enc);
  if (age) {
    const fileKey = await keys.fileKey(await readAgeHeader(createReadStream(path), artifact.key), artifact.key, age);
    return openAgeFile(path, fileKey, artifact.key);
  }
  return pipeline(createReadStream(path), createDecryptStream(keys.passphrases, { label: artifact.key }), () => undefined);
}
