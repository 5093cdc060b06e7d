import { createReadStream } from 'node:fs';
import { Duplex, Readable } from 'node:stream';
import type { Secret } from '../config/secret.ts';
import { BackupError } from '../errors.ts';
import { ScryptPassphraseRecipient } from './age-scrypt.ts';

/**
 * age (age-encryption.org/v1) over Node streams, with the `age-encryption` package: a header of
 * recipient stanzas and its MAC, a 16-byte nonce, then the payload in 64 KiB ChaCha20-Poly1305
 * chunks (STREAM). Any `age -d` opens what this writes. Memory stays at a few chunks whatever
 * the size: the library works on web streams, and every hop here pulls.
 */

/** What new files are encrypted to: age public keys, or a passphrase with scrypt's work factor (log2 N). */
export type AgeTarget = { readonly recipients: readonly string[] } | { readonly passphrase: Secret; readonly workFactor: number };

/** The manifest's record of an age-encrypted artifact: public keys only, never a secret. */
export interface AgeEncryptionInfo {
  readonly algorithm: 'age';
  /** X25519 public keys (age1…) it is encrypted to; empty for a passphrase. */
  readonly recipients: readonly string[];
  /** Set when it is encrypted with a passphrase (age's scrypt recipient) instead. */
  readonly passphrase: null | { readonly kdf: 'scrypt'; readonly workFactor: number };
}

export const ageAlgorithm = 'age';

export function describeAgeTarget(to: AgeTarget): AgeEncryptionInfo {
  return 'recipients' in to
    ? { algorithm: ageAlgorithm, recipients: [...to.recipients], passphrase: null }
    : { algorithm: ageAlgorithm, recipients: [], passphrase: { kdf: 'scrypt', workFactor: to.workFactor } };
}

/**
 * A Duplex: plaintext in, an age file out. Async because the file key is wrapped for every
 * recipient (or the passphrase derived) before the first byte, so that a bad recipient fails
 * here rather than half way through a stream.
 */
export async function createAgeEncryptStream(to: AgeTarget): Promise<Duplex> {
  // age-encryption (with its post-quantum code) is loaded on first use here, in key-ring.ts and
  // age-scrypt.ts: about 0.3 s of CPU that every worker and command paid at start otherwise.
  const encrypter = new (await import('age-encryption')).Encrypter();
  if ('recipients' in to) {
    if (to.recipients.length === 0) throw new Error('unreachable: age encryption to no recipient');
    for (const r of to.recipients) encrypter.addRecipient(r);
  } else {
    encrypter.addRecipient(new ScryptPassphraseRecipient(to.passphrase, to.workFactor));
  }
  const input = new TransformStream<Uint8Array, Uint8Array>();
  const output = await encrypter.encrypt(input.readable);
  return Duplex.fromWeb({ readable: output, writable: input.writable });
}

const versionLine = Buffer.from('age-encryption.org/v1\n', 'ascii');
/** Enough for hundreds of recipients; more than that is not a header we wrote. */
const maxHeaderBytes = 64 * 1024;

export function ageBadFormat(label: string, why: string): BackupError {
  return new BackupError('DECRYPT_BAD_FORMAT', `${label} is not an age-encrypted file (${why}); it was cut short or is not what its manifest says`, { permanent: true });
}

/**
 * The header of an age file (version line … MAC line, inclusive) from the start of a stream;
 * the rest is not read (the stream is destroyed). Cheap on a large object: a restore checks
 * every artifact's header against the configured keys before it downloads anything.
 */
export async function readAgeHeader(source: Readable, label: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let bytes = 0;
  try {
    for await (const chunk of source) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      parts.push(buffer);
      bytes += buffer.length;
      const seen = Buffer.concat(parts, bytes);
      if (!seen.subarray(0, versionLine.length).equals(versionLine.subarray(0, Math.min(versionLine.length, seen.length)))) {
        throw ageBadFormat(label, 'no "age-encryption.org/v1" header');
      }
      const mac = seen.indexOf('\n--- ');
      const end = mac < 0 ? -1 : seen.indexOf('\n', mac + 1);
      if (end >= 0) return seen.subarray(0, end + 1);
      if (bytes > maxHeaderBytes) throw ageBadFormat(label, `no end of header in the first ${maxHeaderBytes} bytes`);
    }
  } finally {
    source.destroy();
  }
  throw ageBadFormat(label, `${bytes} bytes and no complete header`);
}

/**
 * The payload of an age file on disk, decrypted, as a Readable. `fileKey` comes from the
 * caller's key ring, which unwrapped it from the header (and reports wrong keys there); the
 * header's MAC is checked here against it. A chunk that does not authenticate (altered, cut
 * short, reordered) fails the stream with DECRYPT_FAILED before any of it is passed on.
 */
export async function openAgeFile(path: string, fileKey: Uint8Array, label: string): Promise<Readable> {
  const decrypter = new (await import('age-encryption')).Decrypter();
  decrypter.addIdentity({ unwrapFileKey: () => fileKey });
  let plaintext: ReadableStream<Uint8Array>;
  try {
    plaintext = await decrypter.decrypt(ReadableStream.from(createReadStream(path)) as ReadableStream<Uint8Array>);
  } catch (err) {
    throw headerError(err, label);
  }
  return Readable.from(guarded(plaintext, label), { objectMode: false });
}

async function* guarded(plaintext: ReadableStream<Uint8Array>, label: string): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of plaintext) yield chunk;
  } catch (err) {
    throw new BackupError(
      'DECRYPT_FAILED',
      `cannot decrypt ${label}: its header opens with the configured key, but the data does not authenticate (${(err as Error).message}): the object was altered or cut short. Restore another backup.`,
      { permanent: true, cause: err },
    );
  }
}

/** The library's errors are plain Errors; their messages (never secret) say which case it is. */
export function headerError(err: unknown, label: string): BackupError {
  if (err instanceof BackupError) return err;
  const message = (err as Error).message;
  if (/HMAC/i.test(message)) {
    return new BackupError('DECRYPT_FAILED', `cannot decrypt ${label}: its header was altered (the MAC does not match). Restore another backup.`, { permanent: true });
  }
  return ageBadFormat(label, message);
}
