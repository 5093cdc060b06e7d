import type { AgeEncryptionInfo } from '../crypto/age-stream.ts';
import type { EncryptionInfo } from '../crypto/format.ts';
import type { NativeBackupInfo } from '../native/backup-info.ts';

/**
 * The manifest is the commit point of a backup: written last, after every artifact was uploaded
 * and verified. List, restore, verify and retention see only backups that have one.
 *
 * Layout: <prefix>/<target>/<backup id>/<file>.gz (<file>.gz.age when encrypted) and <prefix>/<target>/<backup id>/manifest.json;
 * `rekey` writes re-encrypted objects under <backup id>/rekey-<time>/ and rewrites the manifest in place.
 * A backup id is the UTC start time in ISO 8601 basic format with milliseconds,
 * "20261126T020000.123Z": sortable as text, and without the colons that S3 consoles mangle.
 */
export const manifestFormat = 1;
export const manifestFileName = 'manifest.json';

/**
 * The manifest's record of an encrypted artifact: how it is encrypted, never a secret. New
 * backups use age (the recipients' public keys, or that a passphrase was used); backups of
 * earlier versions carry the old aes-256-gcm-stream-v1 parameters (the salt is not secret) and
 * stay readable until `rekey` converts them.
 */
export type ArtifactEncryption = AgeEncryptionInfo | EncryptionInfo;

export interface ManifestArtifact {
  /** The dump's name in the profile: "vcdb", "inventory". */
  readonly name: string;
  /** Stored file name: "postgres.sql.gz", or "postgres.sql.gz.age" when encrypted ("….gz.enc": the old format). */
  readonly file: string;
  readonly key: string;
  /** Size and sha256 of the object as stored in S3. */
  readonly bytes: number;
  readonly sha256: string;
  /** Size and sha256 of the dump before compression. */
  readonly rawBytes: number;
  readonly rawSha256: string;
  readonly compression: 'gzip';
  /** null: stored as gzip. Otherwise how it is encrypted, keys aside. */
  readonly encryption: null | ArtifactEncryption;
  /** How `verify` loads it into a scratch database; `vcsa-native` files are the appliance's own archive (src/native/). */
  readonly format: 'plain-sql' | 'pg-custom' | 'vcsa-native';
}

export interface Manifest {
  readonly format: typeof manifestFormat;
  readonly tool: string;
  readonly id: string;
  readonly target: string;
  readonly profile: string;
  /** Where the dumps were taken: the executor's description. */
  readonly appliance: string;
  readonly createdAt: string;
  readonly completedAt: string;
  /** When services were stopped and confirmed running again; null when quiescing was off. */
  readonly quiesce: null | { readonly stoppedAt: string; readonly startedAt: string; readonly ms: number };
  readonly timings: Readonly<Record<string, number>>;
  readonly artifacts: readonly ManifestArtifact[];
  /** When `rekey` last re-encrypted the artifacts (the manifest was rewritten then); absent if never. */
  readonly rekeyedAt?: string;
  /** vcsa-native backups: what the appliance said about its own backup (never a password). */
  readonly native?: NativeBackupInfo;
}

export function backupIdFor(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '');
}

/** The time a backup id stands for, or null if it is not one. */
export function parseBackupId(id: string): Date | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\.\d{3})?Z$/.exec(id);
  if (!m) return null;
  const date = new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${m[7] ?? ''}Z`);
  return Number.isNaN(date.getTime()) ? null : date;
}

function join(...parts: string[]): string {
  return parts.filter((p) => p !== '').map((p) => p.replace(/^\/+|\/+$/g, '')).join('/');
}

export function targetPrefix(prefix: string, target: string): string {
  return `${join(prefix, target)}/`;
}

export function backupPrefix(prefix: string, target: string, id: string): string {
  return `${join(prefix, target, id)}/`;
}

export function artifactKey(prefix: string, target: string, id: string, file: string): string {
  return join(prefix, target, id, file);
}

export function manifestKey(prefix: string, target: string, id: string): string {
  return join(prefix, target, id, manifestFileName);
}

/** Checks a manifest read back from storage; throws a message naming the first bad field. */
export function parseManifest(value: unknown, key: string): Manifest {
  const fail = (why: string): never => {
    throw new Error(`${key}: not a vcsa-backup manifest (${why})`);
  };
  if (value === null || typeof value !== 'object') return fail('not a JSON object');
  const m = value as Record<string, unknown>;
  if (m['format'] !== manifestFormat) fail(`format ${JSON.stringify(m['format'])}, expected ${manifestFormat}`);
  for (const field of ['id', 'target', 'profile', 'createdAt'] as const) {
    if (typeof m[field] !== 'string') fail(`${field} missing`);
  }
  if (!Array.isArray(m['artifacts']) || m['artifacts'].length === 0) fail('no artifacts');
  for (const [i, a] of (m['artifacts'] as unknown[]).entries()) {
    const art = a as Record<string, unknown>;
    if (typeof art['key'] !== 'string' || typeof art['bytes'] !== 'number' || typeof art['sha256'] !== 'string') {
      fail(`artifacts[${i}] lacks key, bytes or sha256`);
    }
    const enc = art['encryption'];
    if (enc !== undefined && enc !== null && (typeof enc !== 'object' || typeof (enc as Record<string, unknown>)['algorithm'] !== 'string')) {
      fail(`artifacts[${i}].encryption is neither null nor { algorithm, … }`);
    }
    if (enc && (enc as Record<string, unknown>)['algorithm'] === 'age') {
      const age = enc as Record<string, unknown>;
      const recipients = age['recipients'];
      const passphrase = age['passphrase'];
      if (!Array.isArray(recipients) || !recipients.every((r) => typeof r === 'string')) fail(`artifacts[${i}].encryption.recipients is not a list of age public keys`);
      if (passphrase !== null && (typeof passphrase !== 'object' || (passphrase as Record<string, unknown>)['kdf'] !== 'scrypt')) fail(`artifacts[${i}].encryption.passphrase is neither null nor { kdf: "scrypt", … }`);
      if ((recipients as unknown[]).length === 0 && passphrase === null) fail(`artifacts[${i}].encryption names neither recipients nor a passphrase`);
    }
  }
  return value as Manifest;
}
