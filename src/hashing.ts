import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * sha256 for the whole tree: every size and checksum that the manifest, the spool, the store and
 * restore compare is computed here, so they cannot disagree on the encoding (lower-case hex).
 */

/** A pass-through stream that counts bytes and computes sha256 on the way. */
export class HashingStream extends Transform {
  readonly #hash: Hash = createHash('sha256');
  bytes = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }

  /** Valid once the stream has finished. */
  digest(): string {
    return this.#hash.copy().digest('hex');
  }
}

export interface Digest {
  readonly sha256: string;
  readonly bytes: number;
}

/** sha256 of bytes in memory. */
export function sha256Of(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Reads a stream to its end and returns its size and sha256. */
export async function sha256OfStream(stream: NodeJS.ReadableStream, signal?: AbortSignal): Promise<Digest> {
  const hasher = new HashingStream();
  hasher.resume();
  await pipeline(stream, hasher, signal === undefined ? {} : { signal });
  return { sha256: hasher.digest(), bytes: hasher.bytes };
}

/** Size and sha256 of a local file. */
export function sha256OfFile(path: string, signal?: AbortSignal): Promise<Digest> {
  return sha256OfStream(createReadStream(path), signal);
}
