import { createReadStream, createWriteStream } from 'node:fs';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { HashingStream } from '../hashing.ts';
import type { ManifestArtifact } from '../backup/manifest.ts';
import { BackupError, errorCode } from '../errors.ts';
import { createAgeEncryptStream, openAgeFile, readAgeHeader, type AgeEncryptionInfo, type AgeTarget } from './age-stream.ts';
import type { DecryptionKeys } from './key-ring.ts';
import { openArtifact } from './open-artifact.ts';
import { hasCode } from '../error-codes.ts';

/**
 * Passes every chunk on and copies it into `side`, waiting when `side` is full: one read of the
 * source feeds two consumers with bounded memory. `sideDone` settles when the side's own
 * pipeline has; its failure fails this stream.
 */
class Tee extends Transform {
  readonly #side: Writable;
  readonly #sideDone: Promise<void>;

  constructor(side: Writable, sideDone: Promise<void>) {
    super();
    this.#side = side;
    this.#sideDone = sideDone;
    sideDone.catch((err: unknown) => this.destroy(err as Error));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#side.write(chunk)) callback(null, chunk);
    else this.#side.once('drain', () => callback(null, chunk));
  }

  override _flush(callback: TransformCallback): void {
    this.#side.end();
    this.#sideDone.then(() => callback(), callback);
  }
}

const discard = (): Writable => new Writable({ write: (_chunk, _encoding, callback) => callback() });

export interface Reencrypted {
  readonly bytes: number;
  readonly sha256: string;
  /** What the new file was checked against: decrypted back to the dump, or only its stored bytes. */
  readonly checked: 'decrypted' | 'stored bytes';
}

/**
 * A stored artifact (downloaded to `from`, already checked against its manifest) re-encrypted to
 * `to` in `toPath`, in one pass: decrypt with `keys` → gzip stream → age-encrypt → file, while
 * the same gzip stream is decompressed and its dump's size and sha256 compared with the
 * manifest's (REKEY_CHECK_FAILED otherwise). The plaintext never touches the disk. When the
 * configured keys open the new file too (an identity of a new recipient, or the passphrase),
 * it is decrypted back and checked the same way.
 */
export async function reencryptArtifact(
  from: string,
  artifact: ManifestArtifact,
  keys: DecryptionKeys,
  to: AgeTarget,
  info: AgeEncryptionInfo,
  toPath: string,
  signal?: AbortSignal,
): Promise<Reencrypted> {
  const plaintext = await openArtifact(from, artifact, keys);
  const gunzip = createGunzip();
  const raw = new HashingStream();
  const checked = pipeline(gunzip, raw, discard());
  const out = new HashingStream();
  try {
    await pipeline(plaintext, new Tee(gunzip, checked), await createAgeEncryptStream(to), out, createWriteStream(toPath, { mode: 0o600 }), signal ? { signal } : {});
    await checked;
  } catch (err) {
    gunzip.destroy();
    if (signal?.aborted || errorCode(err).startsWith('DECRYPT_')) throw err;
    throw new BackupError('REKEY_CHECK_FAILED', `${artifact.key} decrypts but does not decompress (${(err as Error).message}); it was left as it is`, { permanent: true, cause: err });
  }
  assertDump(artifact, raw, 'decrypts to');

  let fileKey: Uint8Array | null = null;
  try {
    fileKey = await keys.fileKey(await readAgeHeader(createReadStream(toPath), toPath), toPath, info);
  } catch (err) {
    if (!hasCode(err, 'DECRYPT_FAILED')) throw err;
  }
  if (fileKey) {
    const back = new HashingStream();
    await pipeline(await openAgeFile(toPath, fileKey, toPath), createGunzip(), back, discard(), signal ? { signal } : {});
    assertDump(artifact, back, 're-encrypted, decrypts back to');
  }
  return { bytes: out.bytes, sha256: out.digest(), checked: fileKey ? 'decrypted' : 'stored bytes' };
}

function assertDump(artifact: ManifestArtifact, raw: HashingStream, what: string): void {
  const sha256 = raw.digest();
  if (raw.bytes !== artifact.rawBytes || sha256 !== artifact.rawSha256) {
    throw new BackupError(
      'REKEY_CHECK_FAILED',
      `${artifact.key} ${what} a dump of ${raw.bytes} bytes with sha256 ${sha256.slice(0, 16)}…, but its manifest says ${artifact.rawBytes} bytes, sha256 ${artifact.rawSha256.slice(0, 16)}…; it was left as it is`,
      { permanent: true },
    );
  }
}
