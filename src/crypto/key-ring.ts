import type { Identity } from 'age-encryption';
import type { EncryptionConfig } from '../config/load.ts';
import type { Secret } from '../config/secret.ts';
import { BackupError } from '../errors.ts';
import { publicKeyOf, type AgeIdentities } from './age-keys.ts';
import { ScryptPassphraseIdentity, ScryptStanzaError } from './age-scrypt.ts';
import { headerError, type AgeEncryptionInfo } from './age-stream.ts';
import { sha256Of } from '../hashing.ts';

/**
 * Every key that may open a backup, for restore, verify and rekey: age identities (read on
 * first use), the passphrase and older passphrases (age's scrypt recipient, and the old
 * aes-256-gcm-stream-v1 format). File keys unwrapped once are remembered for the run, so the
 * header check before a download and the decryption after it cost one scrypt, not two.
 */
export class DecryptionKeys {
  /** encryption.passphrase, then encryption.previousPassphrases, in the order they are tried. */
  readonly passphrases: readonly Secret[];
  readonly #identities: AgeIdentities | null;
  readonly #fileKeys = new Map<string, Uint8Array>();

  constructor(passphrases: readonly Secret[], identities: AgeIdentities | null = null) {
    this.passphrases = passphrases;
    this.#identities = identities;
  }

  /** Whether any identity is configured (without reading it). */
  get hasIdentities(): boolean {
    return (this.#identities?.configured ?? 0) > 0;
  }

  /** The age identities; reads encryption.identities on first call (ConfigError when unreadable). */
  identities(): Secret[] {
    return this.#identities?.load() ?? [];
  }

  /**
   * The file key of an age file from its header (readAgeHeader), or DECRYPT_FAILED saying which
   * keys it needs and which are configured (public keys only). `info` is the manifest's record.
   */
  async fileKey(header: Buffer, label: string, info: AgeEncryptionInfo): Promise<Uint8Array> {
    const id = sha256Of(header);
    const known = this.#fileKeys.get(id);
    if (known) return known;
    const candidates: (string | Identity)[] = [...this.identities().map((i) => i.reveal()), ...this.passphrases.map((p) => new ScryptPassphraseIdentity(p))];
    for (const candidate of candidates) {
      // One Decrypter per key: "no identity matched" then means exactly that this key does not fit.
      const decrypter = new (await import('age-encryption')).Decrypter();
      decrypter.addIdentity(candidate);
      try {
        const fileKey = await decrypter.decryptHeader(header);
        this.#fileKeys.set(id, fileKey);
        return fileKey;
      } catch (err) {
        if (err instanceof ScryptStanzaError) throw headerError(err, label);
        if (/no identity matched/i.test((err as Error).message)) continue;
        throw headerError(err, label);
      }
    }
    throw await this.#noKeyFits(label, info);
  }

  async #noKeyFits(label: string, info: AgeEncryptionInfo): Promise<BackupError> {
    const mine = await Promise.all(this.identities().map((i) => publicKeyOf(i).catch(() => '(unreadable)')));
    const have = [
      mine.length > 0 ? `encryption.identities hold the keys of ${mine.join(', ')}` : 'no encryption.identities',
      `${this.passphrases.length} passphrase(s)`,
    ].join(' and ');
    const needs = info.passphrase
      ? 'it is encrypted with a passphrase: set encryption.passphrase (or list the old one under encryption.previousPassphrases) to the one it was taken with'
      : `it is encrypted to ${info.recipients.join(', ')}: add the identity (private key file) of one of them to encryption.identities`;
    return new BackupError('DECRYPT_FAILED', `cannot decrypt ${label}: none of the configured keys opens it (${have}); ${needs}.`, {
      permanent: true,
      details: { recipients: info.recipients, passphrase: info.passphrase !== null, identitiesFor: mine },
    });
  }
}

/** The keys restore, verify and rekey try, from the config. */
export function decryptionKeys(encryption: EncryptionConfig | undefined): DecryptionKeys {
  if (!encryption) return new DecryptionKeys([]);
  return new DecryptionKeys([...(encryption.passphrase ? [encryption.passphrase] : []), ...encryption.previousPassphrases], encryption.identities);
}
