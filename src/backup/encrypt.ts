import type { Secret } from '../config/secret.ts';
import { createEncryptStream } from '../crypto/encrypt-stream.ts';
import { encryptionAlgorithm, type EncryptionInfo } from '../crypto/format.ts';
import { transformFileOnce, type CompressedFile } from './compress.ts';

export interface EncryptedFile extends CompressedFile {
  readonly encryption: EncryptionInfo;
}

/**
 * Encrypts a compressed dump next to itself (`<file>.gz.enc`), once: the encryption parameters
 * (salt included, it is not secret) are kept in the sidecar with the size and sha256, so a
 * retried upload sends the same bytes instead of encrypting again under a new salt.
 */
export function encryptOnce(gzPath: string, passphrase: Secret, signal?: AbortSignal): Promise<EncryptedFile> {
  return transformFileOnce(
    gzPath,
    `${gzPath}.enc`,
    () => {
      const encrypt = createEncryptStream(passphrase);
      return { transform: encrypt, record: { encryption: encrypt.info } };
    },
    { signal, isCurrent: (done) => done.encryption?.algorithm === encryptionAlgorithm },
  );
}
