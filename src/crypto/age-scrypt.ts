import { createCipheriv, createDecipheriv, createHash, randomBytes, scrypt } from 'node:crypto';
import type { Identity, Recipient, Stanza } from 'age-encryption';
import type { Secret } from '../config/secret.ts';

/**
 * age's passphrase recipient ("scrypt" stanza, age-encryption.org/v1), with Node's scrypt
 * instead of the library's. The library's runs in JavaScript on the event loop: at age's work
 * factor (2^18, 256 MiB) that blocks a worker for seconds per artifact, during which it renews
 * neither its fleet lease nor its job lock. Node's runs on libuv's thread pool. The stanza is
 * exactly age's, so `age -d` opens what this writes and this opens what `age -p` writes.
 *
 *   -> scrypt <salt, 16 bytes, base64 without padding> <log2 N>
 *   <ChaCha20-Poly1305(key = scrypt(passphrase, "age-encryption.org/v1/scrypt" ‖ salt, N, r=8, p=1), nonce = 0, file key)>
 *
 * The work factor of new files is encryption.passphraseWorkFactor (age's 18 by default).
 */
/** What a header may ask for: 2^20 is 1 GiB of memory for one derivation. */
const maxWorkFactor = 20;
const label = Buffer.from('age-encryption.org/v1/scrypt', 'ascii');
const zeroNonce = Buffer.alloc(12);

/**
 * Derivations of this process, by hash of (passphrase, salt, work factor): one object is opened
 * several times in a row (rekey reads a header, then the body, then checks the result; verify
 * after a backup), and each derivation costs a second of CPU and 256 MiB. Salts are fresh per
 * object, so the map only ever holds keys for objects this process has opened; it is bounded.
 */
const derived = new Map<string, Promise<Buffer>>();
const derivedLimit = 32;

function deriveWrappingKey(passphrase: Secret, salt: Buffer, logN: number): Promise<Buffer> {
  const id = createHash('sha256').update(passphrase.reveal(), 'utf8').update('\0').update(salt).update(String(logN)).digest('hex');
  const known = derived.get(id);
  if (known) return known;
  const key = runScrypt(passphrase, salt, logN);
  derived.set(id, key);
  key.catch(() => derived.delete(id));
  if (derived.size > derivedLimit) derived.delete(derived.keys().next().value ?? '');
  return key;
}

function runScrypt(passphrase: Secret, salt: Buffer, logN: number): Promise<Buffer> {
  const N = 2 ** logN;
  const r = 8;
  return new Promise((resolve, reject) => {
    // Node refuses when 128·N·r exceeds maxmem (32 MiB by default); this is a bound, not an allocation.
    scrypt(Buffer.from(passphrase.reveal(), 'utf8'), Buffer.concat([label, salt]), 32, { N, r, p: 1, maxmem: 256 * N * r }, (err, key) => {
      if (err) reject(new Error(`age scrypt: key derivation failed (${err.message})`));
      else resolve(key);
    });
  });
}

const base64NoPad = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64').replace(/=+$/, '');

export class ScryptPassphraseRecipient implements Recipient {
  readonly #passphrase: Secret;
  readonly #logN: number;

  constructor(passphrase: Secret, logN: number) {
    this.#passphrase = passphrase;
    this.#logN = logN;
  }

  async wrapFileKey(fileKey: Uint8Array): Promise<Stanza[]> {
    const salt = randomBytes(16);
    const key = await deriveWrappingKey(this.#passphrase, salt, this.#logN);
    const cipher = createCipheriv('chacha20-poly1305', key, zeroNonce, { authTagLength: 16 });
    const body = Buffer.concat([cipher.update(fileKey), cipher.final(), cipher.getAuthTag()]);
    const { Stanza } = await import('age-encryption');
    return [new Stanza(['scrypt', base64NoPad(salt), String(this.#logN)], body)];
  }
}

/** Thrown for a scrypt stanza that age itself would refuse; the caller reports the object as malformed. */
export class ScryptStanzaError extends Error {}

export class ScryptPassphraseIdentity implements Identity {
  readonly #passphrase: Secret;

  constructor(passphrase: Secret) {
    this.#passphrase = passphrase;
  }

  async unwrapFileKey(stanzas: Stanza[]): Promise<Uint8Array | null> {
    for (const s of stanzas) {
      if (s.args[0] !== 'scrypt') continue;
      // As age requires: a passphrase-encrypted file has no other recipient to leak it to.
      if (stanzas.length !== 1) throw new ScryptStanzaError('an age scrypt stanza must be the only one in the header');
      const [, saltText, logNText] = s.args;
      if (s.args.length !== 3 || !saltText || !logNText || !/^[A-Za-z0-9+/]{22}$/.test(saltText) || !/^[1-9][0-9]?$/.test(logNText) || s.body.length !== 32) {
        throw new ScryptStanzaError('malformed age scrypt stanza');
      }
      const logN = Number(logNText);
      if (logN > maxWorkFactor) throw new ScryptStanzaError(`age scrypt work factor 2^${logN} is above the 2^${maxWorkFactor} this tool accepts`);
      const key = await deriveWrappingKey(this.#passphrase, Buffer.from(saltText, 'base64'), logN);
      const decipher = createDecipheriv('chacha20-poly1305', key, zeroNonce, { authTagLength: 16 });
      decipher.setAuthTag(s.body.subarray(16));
      const fileKey = decipher.update(s.body.subarray(0, 16));
      try {
        return Buffer.concat([fileKey, decipher.final()]);
      } catch {
        return null; // another passphrase
      }
    }
    return null;
  }
}
