import { Decrypter, Encrypter, identityToRecipient } from 'age-encryption';
import { resolveSecret, Secret, type SecretRef } from '../config/secret.ts';
import { ConfigError } from '../errors.ts';

/**
 * age keys as they appear in fleet.yaml: recipients (X25519 public keys, "age1…", what new
 * backups are encrypted to) and identities (the matching private keys, "AGE-SECRET-KEY-1…", in
 * secret refs, for restore, verify and rekey only).
 */

/** bech32's alphabet; an X25519 recipient is "age1" and 58 of these. */
const x25519Recipient = /^age1[023456789acdefghjklmnpqrstuvwxyz]{58}$/;

/**
 * Why `value` is not an X25519 recipient, or null. Never quotes the value: a private key pasted
 * here by mistake must not end up in an error message.
 */
export function recipientProblem(value: string): string | null {
  if (/^AGE-SECRET-KEY-/i.test(value.trim())) {
    return 'this is a private key (AGE-SECRET-KEY-…), not a public one: put it in a file referenced by encryption.identities, and its public key (`age-keygen -y FILE`) here';
  }
  if (value.startsWith('age1pq1') || value.startsWith('age1tag')) {
    return "post-quantum and tag recipients are not supported (Debian's age 1.1 cannot decrypt them); use an X25519 key from `age-keygen`";
  }
  if (!x25519Recipient.test(value)) return 'not an age X25519 public key: expected "age1" followed by 58 characters, as `age-keygen` prints it ("Public key: age1…")';
  try {
    new Encrypter().addRecipient(value);
  } catch {
    return 'not a valid age public key (its checksum does not match): copy it again from `age-keygen -y KEYFILE`';
  }
  return null;
}

/**
 * The identities in an age key file: `AGE-SECRET-KEY-1…` lines, with `#` comments and blank
 * lines as `age-keygen` writes them. Problems name the line, never its content.
 */
export function parseIdentities(text: string, field: string, source: string): { identities: Secret[]; problems: string[] } {
  const identities: Secret[] = [];
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    let valid = line.startsWith('AGE-SECRET-KEY-1');
    if (valid) {
      try {
        new Decrypter().addIdentity(line);
      } catch {
        valid = false;
      }
    }
    if (valid) identities.push(new Secret(line, `${source}, line ${i + 1}`));
    else problems.push(`${field}: line ${i + 1} is not an age X25519 identity (AGE-SECRET-KEY-1…); an age key file holds such lines and # comments, as \`age-keygen -o key.txt\` writes it`);
  });
  if (identities.length === 0 && problems.length === 0) problems.push(`${field}: holds no identity (no AGE-SECRET-KEY-1… line); create one with \`age-keygen -o key.txt\``);
  return { identities, problems };
}

/**
 * encryption.identities: secret refs read on first use only, by restore, verify and rekey when
 * they meet an age-encrypted backup. Workers and `backup` never read them, so a worker's host
 * need not have the key file at all — with recipients only, it holds nothing that decrypts.
 * A ref that cannot be read or parsed fails then, as a ConfigError naming the field (exit 2).
 */
export class AgeIdentities {
  readonly #refs: readonly SecretRef[];
  readonly #env: NodeJS.ProcessEnv;
  #loaded: Secret[] | null = null;

  constructor(refs: readonly SecretRef[], env: NodeJS.ProcessEnv) {
    this.#refs = refs;
    this.#env = env;
  }

  /** How many refs are configured (each may hold several identities). */
  get configured(): number {
    return this.#refs.length;
  }

  load(): Secret[] {
    if (this.#loaded) return this.#loaded;
    const identities: Secret[] = [];
    const problems: string[] = [];
    this.#refs.forEach((ref, i) => {
      const field = `encryption.identities[${i}]`;
      let secret: Secret;
      try {
        secret = resolveSecret(ref, field, this.#env);
      } catch (err) {
        problems.push((err as Error).message);
        return;
      }
      const parsed = parseIdentities(secret.reveal(), field, secret.source);
      identities.push(...parsed.identities);
      problems.push(...parsed.problems);
    });
    if (problems.length > 0) throw new ConfigError(problems);
    this.#loaded = identities;
    return identities;
  }

  toJSON(): { configured: number } {
    return { configured: this.#refs.length };
  }
}

/** The public key of an identity, for messages ("your key is age1…"): public, safe to show. */
export async function publicKeyOf(identity: Secret): Promise<string> {
  return identityToRecipient(identity.reveal());
}
