import { createReadStream, createWriteStream } from 'node:fs';
import { access, readFile, rename, writeFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { Secret } from '../config/secret.ts';
import { createEncryptStream } from '../crypto/encrypt-stream.ts';
import { encryptionAlgorithm, type EncryptionInfo } from '../crypto/format.ts';
import type { CompressedFile } from './compress.ts';
import { HashingStream } from './hashing.ts';

export interface EncryptedFile extends CompressedFile {
  readonly encryption: EncryptionInfo;
}

/**
 * Encrypts a compressed dump next to itself (`<file>.gz.enc`), once: like compressOnce, the
 * result's size, sha256 and encryption parameters (salt included, it is not secret) are kept in
 * a sidecar, so a retried upload sends the same bytes instead of encrypting again under a new
 * salt. Written under a temporary name and renamed: a crash mid-way leaves nothing that looks
 * finished.
 */
export async function encryptOnce(gzPath: string, passphrase: Secret, signal?: AbortSignal): Promise<EncryptedFile> {
  const path = `${gzPath}.enc`;
  const sidecar = `${path}.json`;
  try {
    await access(path);
    const done = JSON.parse(await readFile(sidecar, 'utf8')) as { bytes: number; sha256: string; encryption: EncryptionInfo };
    if (done.encryption.algorithm === encryptionAlgorithm) return { path, bytes: done.bytes, sha256: done.sha256, encryption: done.encryption };
  } catch {
    // not encrypted yet (or interrupted): do it now
  }
  const tmp = `${path}.tmp`;
  const encrypt = createEncryptStream(passphrase);
  const hasher = new HashingStream();
  await pipeline(createReadStream(gzPath), encrypt, hasher, createWriteStream(tmp, { mode: 0o600 }), signal ? { signal } : {});
  const result = { bytes: hasher.bytes, sha256: hasher.digest(), encryption: encrypt.info };
  await writeFile(sidecar, JSON.stringify(result));
  await rename(tmp, path);
  return { path, ...result };
}
