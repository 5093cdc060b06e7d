import { resolveSecret, Secret, type SecretRef } from '../config/secret.ts';
import { ConfigError } from '../errors.ts';

/**
 * age keys as they appear in fleet.yaml: recipients (X25519 public keys, "age1…", what new
 * backups are encrypted to) and identities (the matching private keys, "AGE-SECRET-KEY-1…", in
 * secret refs, for restore, verify and rekey only).
 *
 * Checked here without the age library: every command loads the config, and the library (with
 * its post-quantum and curve code) costs most CLI invocations half a second of start-up for
 * nothing. Both encodings are bech32 (BIP 173) of 32 bytes; the library accepts what passes here.
 */

const bech32Charset = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const bech32Generator = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function bech32Polymod(values: readonly number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    bech32Generator.forEach((g, i) => {
      if ((top >>> i) & 1) chk ^= g;
    });
  }
  return chk;
}

/** The bytes a bech32 string with this prefix encodes, or null when it is not one (checksum included). No length limit: age identities are longer than BIP 173's 90 characters. */
export function bech32Bytes(text: string, prefix: string): Buffer | null {
  if (text !== text.toLowerCase() && text !== text.toUpperCase()) return null;
  const lower = text.toLowerCase();
  const hrp = prefix.toLowerCase();
  const separator = lower.lastIndexOf('1');
  if (lower.slice(0, separator) !== hrp) return null;
  const data = [...lower.slice(separator + 1)].map((c) => bech32Charset.indexOf(c));
  if (data.length < 6 || data.some((d) => d < 0)) return null;
  const codes = [...hrp].map((c) => c.charCodeAt(0));
  if (bech32Polymod([...codes.map((c) => c >> 5), 0, ...codes.map((c) => c & 31), ...data]) !== 1) return null;
  const bytes: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const word of data.slice(0, -6)) {
    acc = (acc << 5) | word;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((acc >> bits) & 0xff);
    }
    acc &= (1 << bits) - 1;
  }
  // The padding is fewer than 5 bits, all zero.
  return bits < 5 && acc === 0 ? Buffer.from(bytes) : null;
}

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
  if (bech32Bytes(value, 'age')?.length !== 32) return 'not a valid age public key (its checksum does not match): copy it again from `age-keygen -y KEYFILE`';
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
    if (line.startsWith('AGE-SECRET-KEY-1') && bech32Bytes(line, 'AGE-SECRET-KEY-')?.length === 32) identities.push(new Secret(line, `${source}, line ${i + 1}`));
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
  const { identityToRecipient } = await import('age-encryption');
  return identityToRecipient(identity.reveal());
}
