import { createDecipheriv } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type { Secret } from '../config/secret.ts';
import { ChunkQueue } from './chunk-queue.ts';
import { chunkAad, chunkNonce, decodeHeader, decryptFailed, headerBytes, maxChunks, tagBytes, type StreamHeader } from './format.ts';
import { deriveKey, isDerivedKey, type DerivedKey } from './key-derivation.ts';

export interface DecryptOptions {
  /** Names the object in error messages ("s3 key …"); default "the encrypted artifact". */
  readonly label?: string;
}

/**
 * The aes-256-gcm-stream-v1 format (format.ts) in, plaintext out. Each chunk is authenticated
 * before a byte of it is passed on; a stream cut short, reordered, altered or with bytes
 * appended fails with DECRYPT_FAILED, something else than our format with DECRYPT_BAD_FORMAT.
 *
 * Several passphrases may be given (the current one, then older ones): each is tried on the
 * first chunk, in order, and the first that opens it is used for the rest. The key is derived
 * once per passphrase tried, from the salt and parameters in the header.
 */
export class DecryptStream extends Transform {
  readonly #label: string;
  readonly #candidates: readonly (Secret | DerivedKey)[];
  readonly #pending = new ChunkQueue();
  #header: StreamHeader | null = null;
  #headerBytes: Buffer | null = null;
  #key: Buffer | null = null;
  #counter = 0;

  constructor(keys: Secret | DerivedKey | readonly (Secret | DerivedKey)[], options: DecryptOptions = {}) {
    super();
    this.#candidates = Array.isArray(keys) ? keys : [keys as Secret | DerivedKey];
    if (this.#candidates.length === 0) throw new Error('unreachable: decrypting without a passphrase');
    this.#label = options.label ?? 'the encrypted artifact';
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#pending.push(chunk);
    this.#drain().then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    this.#finish().then(() => callback(), callback);
  }

  async #drain(): Promise<void> {
    if (!this.#header) {
      if (this.#pending.bytes < headerBytes) return;
      const bytes = this.#pending.take(headerBytes);
      this.#header = decodeHeader(bytes, this.#label);
      this.#headerBytes = Buffer.from(bytes);
    }
    const segment = this.#header.chunkBytes + tagBytes;
    // More than one sealed chunk pending: the first is certainly not the last.
    while (this.#pending.bytes > segment) this.push(await this.#open(this.#pending.take(segment), false));
  }

  async #finish(): Promise<void> {
    if (!this.#header) {
      decodeHeader(this.#pending.take(this.#pending.bytes), this.#label); // throws: too short, or not ours
      throw new Error('unreachable: a short header decoded');
    }
    this.push(await this.#open(this.#pending.take(this.#pending.bytes), true));
  }

  async #open(sealed: Buffer, last: boolean): Promise<Buffer> {
    const counter = this.#counter;
    if (counter >= maxChunks || sealed.length < tagBytes) throw decryptFailed(this.#label, counter);
    let plaintext: Buffer | null = null;
    if (this.#key) {
      plaintext = this.#tryOpen(this.#key, sealed, last);
    } else {
      for (const candidate of this.#candidates) {
        const key = isDerivedKey(candidate) ? candidate.key : await this.#derive(candidate);
        plaintext = this.#tryOpen(key, sealed, last);
        if (plaintext) {
          this.#key = key;
          break;
        }
      }
    }
    // Only the empty input has an empty last chunk; anything else is not what we wrote.
    if (!plaintext || (last && plaintext.length === 0 && counter > 0)) throw decryptFailed(this.#label, counter);
    this.#counter += 1;
    return plaintext;
  }

  async #derive(passphrase: Secret): Promise<Buffer> {
    const header = this.#header;
    if (!header) throw new Error('unreachable: deriving before the header');
    return (await deriveKey(passphrase, header.salt, header.scrypt)).key;
  }

  #tryOpen(key: Buffer, sealed: Buffer, last: boolean): Buffer | null {
    if (!this.#header || !this.#headerBytes) throw new Error('unreachable: opening before the header');
    const decipher = createDecipheriv('aes-256-gcm', key, chunkNonce(this.#header.noncePrefix, this.#counter));
    decipher.setAAD(chunkAad(this.#headerBytes, last));
    decipher.setAuthTag(sealed.subarray(sealed.length - tagBytes));
    const body = decipher.update(sealed.subarray(0, sealed.length - tagBytes));
    try {
      return Buffer.concat([body, decipher.final()]);
    } catch {
      return null;
    }
  }
}

export function createDecryptStream(keys: Secret | DerivedKey | readonly (Secret | DerivedKey)[], options: DecryptOptions = {}): DecryptStream {
  return new DecryptStream(keys, options);
}
