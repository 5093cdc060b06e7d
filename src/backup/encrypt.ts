import { isDeepStrictEqual } from 'node:util';
import type { EncryptionConfig } from '../config/load.ts';
import { createAgeEncryptStream, describeAgeTarget, type AgeEncryptionInfo, type AgeTarget } from '../crypto/age-stream.ts';
import { transformFileOnce, type TransformedFile } from './compress.ts';

export interface EncryptedFile extends TransformedFile {
  readonly encryption: AgeEncryptionInfo;
}

/** Suffix of an encrypted artifact's stored name: "postgres.sql.gz.age" opens with `age -d`. */
export const encryptedSuffix = '.age';

/**
 * What new backups are encrypted to: the recipients when there are any (workers then hold no
 * secret that decrypts), else the passphrase. New backups are always age; the old format is
 * read-only.
 */
export function encryptionTarget(encryption: EncryptionConfig): AgeTarget {
  if (encryption.recipients.length > 0) return { recipients: encryption.recipients };
  if (!encryption.passphrase) throw new Error('unreachable: encryption without recipients or passphrase passed validation');
  return { passphrase: encryption.passphrase, workFactor: encryption.passphraseWorkFactor };
}

/**
 * Encrypts a compressed dump next to itself (`<file>.gz.age`), once: a retried upload sends the
 * same bytes instead of encrypting again (under a new file key), unless the recipients changed
 * meanwhile. The sidecar records the recipients' public keys (never a secret) for the manifest.
 */
export function encryptOnce(gzPath: string, to: AgeTarget, signal?: AbortSignal): Promise<EncryptedFile> {
  return transformFileOnce(
    gzPath,
    `${gzPath}${encryptedSuffix}`,
    async () => ({ transform: await createAgeEncryptStream(to), record: { encryption: describeAgeTarget(to) } }),
    // Recipients changed since an earlier attempt (a worker restarted with a new config): encrypt again.
    { signal, isCurrent: (done) => isDeepStrictEqual(done.encryption, describeAgeTarget(to)) },
  );
}
