import { BackupError } from '../errors.ts';

/**
 * The encrypted artifact format, "aes-256-gcm-stream-v1" (magic "VCSAENC1"), after age's STREAM
 * construction: a small header, then the plaintext in fixed-size chunks, each sealed with
 * AES-256-GCM under one key derived from the passphrase with scrypt.
 *
 *   header (39 bytes): "VCSAENC1" | log2(N) u8 | r u8 | p u8 | chunkBytes u32be | salt 16 | nonce prefix 8
 *   chunk i:           ciphertext (chunkBytes bytes, the last one 0..chunkBytes) | GCM tag 16
 *
 * Nonce of chunk i = nonce prefix ‖ i as u32be, so chunks cannot be reordered or repeated. The
 * additional data of every chunk is the whole header followed by one byte, 1 for the last chunk
 * and 0 otherwise: a changed header fails every chunk, and a stream cut at a chunk boundary (or
 * with anything appended) fails because its final chunk was not sealed as the last one. Only
 * the empty plaintext has an empty last chunk, so there is exactly one encoding of each input.
 */
export const encryptionAlgorithm = 'aes-256-gcm-stream-v1';
export const magic = Buffer.from('VCSAENC1', 'ascii');
export const saltBytes = 16;
export const noncePrefixBytes = 8;
export const tagBytes = 16;
export const keyBytes = 32;
export const headerBytes = magic.length + 3 + 4 + saltBytes + noncePrefixBytes;
export const defaultChunkBytes = 64 * 1024;
/** Bounds on what a header may ask for: memory stays bounded by one chunk whatever the input. */
export const minChunkBytes = 16;
export const maxChunkBytes = 16 * 1024 * 1024;
/** The counter is 32 bits: 2^32 chunks of 64 KiB is 256 TiB per artifact. */
export const maxChunks = 2 ** 32;

export interface ScryptParams {
  /** CPU/memory cost, a power of two. */
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

export interface StreamHeader {
  readonly scrypt: ScryptParams;
  readonly chunkBytes: number;
  readonly salt: Buffer;
  readonly noncePrefix: Buffer;
}

/** Not our format at all (or not a version we read): nothing to do with the passphrase. */
export function badFormat(label: string, why: string): BackupError {
  return new BackupError(
    'DECRYPT_BAD_FORMAT',
    `${label} is not a vcsa-backup encrypted artifact (${why}); it was not written by this tool's encryption, or was cut short`,
    { permanent: true },
  );
}

/** Authentication failed. Never says anything about the passphrase but where it is configured. */
export function decryptFailed(label: string, chunk: number): BackupError {
  const where =
    chunk === 0
      ? 'the first chunk does not authenticate'
      : `chunk ${chunk} does not authenticate, though the chunks before it do: the passphrase is right, the object was cut short, reordered or altered`;
  return new BackupError(
    'DECRYPT_FAILED',
    `cannot decrypt ${label}: wrong encryption.passphrase or the object was altered (${where}). ` +
      'Configure the passphrase the backup was taken with (encryption.passphrase, or list it under encryption.previousPassphrases), or restore another backup.',
    { permanent: true, details: { chunk } },
  );
}

export function validateScrypt(params: ScryptParams): string | null {
  const { N, r, p } = params;
  if (!Number.isInteger(N) || N < 2 ** 10 || N > 2 ** 20 || (N & (N - 1)) !== 0) return `scrypt N ${N} is not a power of two from 2^10 to 2^20`;
  if (!Number.isInteger(r) || r < 1 || r > 32) return `scrypt r ${r} is not from 1 to 32`;
  if (!Number.isInteger(p) || p < 1 || p > 16) return `scrypt p ${p} is not from 1 to 16`;
  return null;
}

export function validateChunkBytes(chunkBytes: number): string | null {
  if (!Number.isInteger(chunkBytes) || chunkBytes < minChunkBytes || chunkBytes > maxChunkBytes) {
    return `chunk size ${chunkBytes} is not from ${minChunkBytes} to ${maxChunkBytes} bytes`;
  }
  return null;
}

export function encodeHeader(header: StreamHeader): Buffer {
  const out = Buffer.alloc(headerBytes);
  magic.copy(out, 0);
  let at = magic.length;
  out.writeUInt8(Math.log2(header.scrypt.N), at++);
  out.writeUInt8(header.scrypt.r, at++);
  out.writeUInt8(header.scrypt.p, at++);
  out.writeUInt32BE(header.chunkBytes, at);
  at += 4;
  header.salt.copy(out, at);
  at += saltBytes;
  header.noncePrefix.copy(out, at);
  return out;
}

/** Parses the first `headerBytes` bytes; throws DECRYPT_BAD_FORMAT when they are not a header we read. */
export function decodeHeader(bytes: Buffer, label: string): StreamHeader {
  if (!bytes.subarray(0, magic.length).equals(magic.subarray(0, Math.min(magic.length, bytes.length)))) throw badFormat(label, 'no VCSAENC1 header');
  if (bytes.length < headerBytes) throw badFormat(label, `${bytes.length} bytes, shorter than the ${headerBytes}-byte header`);
  let at = magic.length;
  const log2N = bytes.readUInt8(at++);
  const scrypt = { N: 2 ** log2N, r: bytes.readUInt8(at++), p: bytes.readUInt8(at++) };
  const chunkBytes = bytes.readUInt32BE(at);
  at += 4;
  const problem = validateScrypt(scrypt) ?? validateChunkBytes(chunkBytes);
  if (problem) throw badFormat(label, `unsupported header: ${problem}`);
  const salt = Buffer.from(bytes.subarray(at, at + saltBytes));
  at += saltBytes;
  const noncePrefix = Buffer.from(bytes.subarray(at, at + noncePrefixBytes));
  return { scrypt, chunkBytes, salt, noncePrefix };
}

export function chunkNonce(noncePrefix: Buffer, counter: number): Buffer {
  const nonce = Buffer.alloc(noncePrefixBytes + 4);
  noncePrefix.copy(nonce, 0);
  nonce.writeUInt32BE(counter, noncePrefixBytes);
  return nonce;
}

export function chunkAad(header: Buffer, last: boolean): Buffer {
  return Buffer.concat([header, Buffer.from([last ? 1 : 0])]);
}

/** What the manifest records about an encrypted artifact: everything but the passphrase (the salt is not secret). */
export interface EncryptionInfo {
  readonly algorithm: typeof encryptionAlgorithm;
  readonly kdf: 'scrypt';
  readonly N: number;
  readonly r: number;
  readonly p: number;
  /** base64 */
  readonly salt: string;
  readonly chunkBytes: number;
}

export function describeHeader(header: StreamHeader): EncryptionInfo {
  return {
    algorithm: encryptionAlgorithm,
    kdf: 'scrypt',
    N: header.scrypt.N,
    r: header.scrypt.r,
    p: header.scrypt.p,
    salt: header.salt.toString('base64'),
    chunkBytes: header.chunkBytes,
  };
}
