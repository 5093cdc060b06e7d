import { randomBytes, scrypt } from 'node:crypto';
import type { Secret } from '../config/secret.ts';
import { keyBytes, saltBytes, validateScrypt, type ScryptParams } from './format.ts';

/**
 * scrypt is slow on purpose (about 0.1 s and 32 MiB at these settings), so a stolen bucket
 * cannot be brute-forced cheaply. It runs on libuv's thread pool: a worker keeps renewing its
 * fleet lease while a key is derived.
 */
export const defaultScrypt: ScryptParams = { N: 2 ** 15, r: 8, p: 1 };

/** A key and the salt and parameters it came from, so one derivation serves a whole artifact. */
export interface DerivedKey {
  readonly key: Buffer;
  readonly salt: Buffer;
  readonly scrypt: ScryptParams;
}

export function isDerivedKey(value: Secret | DerivedKey): value is DerivedKey {
  return 'key' in value && Buffer.isBuffer(value.key);
}

export function newSalt(): Buffer {
  return randomBytes(saltBytes);
}

export async function deriveKey(passphrase: Secret, salt: Buffer, params: ScryptParams = defaultScrypt): Promise<DerivedKey> {
  const problem = validateScrypt(params);
  if (problem) throw new Error(`encryption: ${problem}`);
  const { N, r, p } = params;
  const key = await new Promise<Buffer>((resolve, reject) => {
    // Node's default maxmem (32 MiB) is exactly 128·N·r at the defaults; leave room.
    scrypt(Buffer.from(passphrase.reveal(), 'utf8'), salt, keyBytes, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (err, derived) => {
      if (err) reject(new Error(`encryption: key derivation failed (${err.message})`));
      else resolve(derived);
    });
  });
  return { key, salt, scrypt: params };
}
