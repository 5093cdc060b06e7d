import { createCipheriv, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type { Secret } from '../config/secret.ts';
import { ChunkQueue } from './chunk-queue.ts';
import {
  chunkAad, chunkNonce, defaultChunkBytes, describeHeader, encodeHeader, maxChunks, noncePrefixBytes, validateChunkBytes,
  type EncryptionInfo, type ScryptParams, type StreamHeader,
} from './format.ts';
import { defaultScrypt, deriveKey, isDerivedKey, newSalt, type DerivedKey } from './key-derivation.ts';

export interface EncryptOptions {
  /** Used only with a passphrase; a DerivedKey carries its own. */
  readonly scrypt?: ScryptParams;
  readonly chunkBytes?: number;
}

/**
 * Plaintext in, the aes-256-gcm-stream-v1 format (format.ts) out. New backups no longer use
 * this format (they are age); it stays so that the tests can write backups as earlier versions
 * did, which restore, verify and rekey must still read. Holds at most one chunk (plus the write
 * in hand): a chunk is sealed only once the next byte, or the end, shows whether it is the last.
 * Given a passphrase, it picks a fresh salt and derives the key once, when the first data or the
 * end arrives.
 */
export class EncryptStream extends Transform {
  readonly header: StreamHeader;
  readonly #headerBytes: Buffer;
  readonly #pending = new ChunkQueue();
  #key: Buffer | null;
  readonly #passphrase: Secret | null;
  #counter = 0;
  #headerSent = false;

  constructor(source: Secret | DerivedKey, options: EncryptOptions = {}) {
    super();
    const chunkBytes = options.chunkBytes ?? defaultChunkBytes;
    const problem = validateChunkBytes(chunkBytes);
    if (problem) throw new Error(`encryption: ${problem}`);
    const derived = isDerivedKey(source) ? source : null;
    this.#key = derived?.key ?? null;
    this.#passphrase = isDerivedKey(source) ? null : source;
    this.header = {
      scrypt: derived?.scrypt ?? options.scrypt ?? defaultScrypt,
      chunkBytes,
      salt: derived?.salt ?? newSalt(),
      noncePrefix: randomBytes(noncePrefixBytes),
    };
    this.#headerBytes = encodeHeader(this.header);
  }

  /** For the manifest: algorithm, scrypt parameters, salt, chunk size. */
  get info(): EncryptionInfo {
    return describeHeader(this.header);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#ready().then(() => {
      this.#pending.push(chunk);
      // More than one chunk's worth pending: the first chunk is certainly not the last.
      while (this.#pending.bytes > this.header.chunkBytes) this.push(this.#seal(this.#pending.take(this.header.chunkBytes), false));
      callback();
    }, callback);
  }

  override _flush(callback: TransformCallback): void {
    this.#ready().then(() => {
      this.push(this.#seal(this.#pending.take(this.#pending.bytes), true));
      callback();
    }, callback);
  }

  async #ready(): Promise<void> {
    if (!this.#key) {
      if (!this.#passphrase) throw new Error('unreachable: no key and no passphrase');
      this.#key = (await deriveKey(this.#passphrase, this.header.salt, this.header.scrypt)).key;
    }
    if (!this.#headerSent) {
      this.push(this.#headerBytes);
      this.#headerSent = true;
    }
  }

  #seal(plaintext: Buffer, last: boolean): Buffer {
    if (!this.#key) throw new Error('unreachable: sealing before the key is derived');
    if (this.#counter >= maxChunks) throw new Error('encryption: artifact too large for one stream (2^32 chunks)');
    const cipher = createCipheriv('aes-256-gcm', this.#key, chunkNonce(this.header.noncePrefix, this.#counter));
    cipher.setAAD(chunkAad(this.#headerBytes, last));
    const sealed = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    this.#counter += 1;
    return sealed;
  }
}

export function createEncryptStream(source: Secret | DerivedKey, options: EncryptOptions = {}): EncryptStream {
  return new EncryptStream(source, options);
}
