import type { AgeEncryptionInfo } from '../crypto/age-stream.ts';
import type { EncryptionInfo } from '../crypto/format.ts';
import type { QuiesceRecord } from './spool.ts';
import type { NativeBackupInfo } from '../native/backup-info.ts';
import { targetNamePattern } from '../config/schema.ts';
import { BackupError } from '../errors.ts';
import { builtinProfiles } from '../profiles/builtin.ts';
import type { Profile } from '../profiles/profile.ts';

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
  readonly quiesce: null | QuiesceRecord;
  readonly timings: Readonly<Record<string, number>>;
  readonly artifacts: readonly ManifestArtifact[];
  /** When `rekey` last re-encrypted the artifacts (the manifest was rewritten then); absent if never. */
  readonly rekeyedAt?: string;
  /** vcsa-native backups: what the appliance said about its own backup (never a password). */
  readonly native?: NativeBackupInfo;
  /**
   * The server-side encryption asked of S3 for every object of the backup (s3.serverSideEncryption,
   * s3.kmsKeyId when it was written or last rekeyed); absent when none was.
   */
  readonly serverSideEncryption?: ServerSideEncryptionRecord;
}

/** SSE-S3 ("AES256") or SSE-KMS ("aws:kms", with the key id when one was configured). */
export interface ServerSideEncryptionRecord {
  readonly algorithm: 'AES256' | 'aws:kms';
  readonly kmsKeyId?: string;
}

/** The manifest's `serverSideEncryption` field for these S3 settings, to spread into a manifest. */
export function sseRecord(s3: { readonly serverSideEncryption?: 'AES256' | 'aws:kms' | undefined; readonly kmsKeyId?: string | undefined }): { serverSideEncryption?: ServerSideEncryptionRecord } {
  if (s3.serverSideEncryption === undefined) return {};
  return { serverSideEncryption: { algorithm: s3.serverSideEncryption, ...(s3.kmsKeyId === undefined ? {} : { kmsKeyId: s3.kmsKeyId }) } };
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

/**
 * Where a manifest lives, taken from its key: `<prefix>/<target>/<id>/manifest.json`. Only these
 * values (and the profile's own file names) build paths and keys afterwards, never the
 * manifest's own words for them.
 */
export interface ManifestLocation {
  readonly prefix: string;
  readonly target: string;
  readonly id: string;
}

export function manifestLocation(key: string): ManifestLocation | null {
  const parts = key.split('/');
  if (parts.length < 3 || parts[parts.length - 1] !== manifestFileName) return null;
  const id = parts[parts.length - 2] ?? '';
  const target = parts[parts.length - 3] ?? '';
  return { prefix: parts.slice(0, -3).join('/'), target, id };
}

/** The stored names an artifact of a dump may have: gzip, age, or the old format's `.enc`. */
export function storedFileNames(dumpFile: string): Record<'plain' | 'age' | 'legacy', string> {
  return { plain: `${dumpFile}.gz`, age: `${dumpFile}.gz.age`, legacy: `${dumpFile}.gz.enc` };
}

const sha256Pattern = /^[0-9a-f]{64}$/;
/** Names used in keys and on disk: no separators, no "." or "..", nothing a shell or S3 console mangles. */
const safeSegment = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** `rekey` puts re-encrypted objects under `<id>/rekey-<backup id>/`. */
const rekeyFolder = /^rekey-\d{8}T\d{6}(\.\d{3})?Z$/;

function isByteCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Checks a manifest read back from storage, strictly: anyone who can write to the bucket can
 * write a manifest, and restore and verify act on what it says. Its `target` and `id` must be
 * where it lives, the id a backup id, every artifact a dump of its profile with that dump's
 * stored name (no separators), keyed exactly `<prefix>/<target>/<id>/<file>` (or the `rekey-…/`
 * folder of that backup), sizes and sha256s well formed. Anything else is MANIFEST_INVALID,
 * raised before anything is downloaded, written or stopped.
 */
export function parseManifest(value: unknown, key: string, profiles: ReadonlyMap<string, Profile> = builtinProfiles): Manifest {
  const fail = (field: string, why: string): never => {
    throw new BackupError(
      'MANIFEST_INVALID',
      `${key}: not a valid vcsa-backup manifest (${field}: ${why}); it is ignored. Nothing was downloaded or touched — check who can write to the bucket, and delete or move that object`,
      { permanent: true, details: { manifestKey: key, field } },
    );
  };
  const where = manifestLocation(key);
  if (!where) return fail('key', `expected <prefix>/<target>/<id>/${manifestFileName}`);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return fail('(top level)', 'not a JSON object');
  const m = value as Record<string, unknown>;
  if (m['format'] !== manifestFormat) fail('format', `${JSON.stringify(m['format'])}, expected ${manifestFormat}`);
  for (const field of ['id', 'target', 'profile', 'createdAt'] as const) {
    if (typeof m[field] !== 'string') fail(field, 'missing or not a string');
  }
  if (m['id'] !== where.id) fail('id', `${JSON.stringify(m['id'])} but the manifest lives under backup id ${JSON.stringify(where.id)}`);
  if (parseBackupId(where.id) === null) fail('id', `${JSON.stringify(where.id)} is not a backup id (UTC time as 20261126T020000.123Z)`);
  if (m['target'] !== where.target) fail('target', `${JSON.stringify(m['target'])} but the manifest lives under target ${JSON.stringify(where.target)}`);
  if (!targetNamePattern.test(where.target)) fail('target', `${JSON.stringify(where.target)} is not a target name`);
  const profile = profiles.get(m['profile'] as string);
  if (!profile) fail('profile', `${JSON.stringify(m['profile'])} is not a profile this version knows (${[...profiles.keys()].join(', ')})`);
  const dumps = (profile as Profile).dumps;
  const backupDir = backupPrefix(where.prefix, where.target, where.id);
  if (!Array.isArray(m['artifacts']) || m['artifacts'].length === 0) fail('artifacts', 'missing or empty');
  const names = new Set<string>();
  for (const [i, a] of (m['artifacts'] as unknown[]).entries()) {
    const at = `artifacts[${i}]`;
    if (a === null || typeof a !== 'object' || Array.isArray(a)) return fail(at, 'not an object');
    const art = a as Record<string, unknown>;
    // vcsa-native: the artifacts are the appliance's own files, whatever it named them (src/native/).
    const nativeName = (profile as Profile).name === 'vcsa-native' && typeof art['name'] === 'string' && art['name'] !== '' ? art['name'] : null;
    const dump = nativeName ? { name: nativeName, file: nativeName.replace(/\//g, '__') } : dumps.find((d) => d.name === art['name']);
    if (!dump) return fail(`${at}.name`, `${JSON.stringify(art['name'])} is not a dump of profile ${(profile as Profile).name} (${dumps.map((d) => d.name).join(', ')})`);
    if (names.has(dump.name)) fail(`${at}.name`, `${dump.name} is listed twice`);
    names.add(dump.name);
    const enc = art['encryption'];
    if (enc !== undefined && enc !== null && (typeof enc !== 'object' || typeof (enc as Record<string, unknown>)['algorithm'] !== 'string')) {
      fail(`${at}.encryption`, 'neither null nor { algorithm, … }');
    }
    const algorithm = enc ? ((enc as Record<string, unknown>)['algorithm'] as string) : null;
    const stored = storedFileNames(dump.file);
    const expectedFile = algorithm === null ? stored.plain : algorithm === 'age' ? stored.age : stored.legacy;
    if (art['file'] !== expectedFile) fail(`${at}.file`, `${JSON.stringify(art['file'])}; the ${dump.name} dump ${algorithm === null ? 'unencrypted' : `encrypted with ${algorithm}`} is stored as ${JSON.stringify(expectedFile)}`);
    if (!safeSegment.test(expectedFile)) fail(`${at}.file`, `profile file name ${JSON.stringify(expectedFile)} is not a plain file name`);
    const artKey = art['key'];
    const underRekey = typeof artKey === 'string' && artKey.startsWith(backupDir) && rekeyFolder.test(artKey.slice(backupDir.length).split('/')[0] ?? '') && artKey === `${backupDir}${artKey.slice(backupDir.length).split('/')[0] ?? ''}/${expectedFile}`;
    if (artKey !== `${backupDir}${expectedFile}` && !underRekey) fail(`${at}.key`, `${JSON.stringify(artKey)}; expected ${JSON.stringify(`${backupDir}${expectedFile}`)} (the backup's own folder)`);
    if (!isByteCount(art['bytes'])) fail(`${at}.bytes`, 'not a byte count');
    if (typeof art['sha256'] !== 'string' || !sha256Pattern.test(art['sha256'])) fail(`${at}.sha256`, 'not a sha256 in hex');
    if (art['rawBytes'] !== undefined && !isByteCount(art['rawBytes'])) fail(`${at}.rawBytes`, 'not a byte count');
    if (art['rawSha256'] !== undefined && (typeof art['rawSha256'] !== 'string' || !sha256Pattern.test(art['rawSha256']))) fail(`${at}.rawSha256`, 'not a sha256 in hex');
    if (art['compression'] !== undefined && art['compression'] !== 'gzip') fail(`${at}.compression`, `${JSON.stringify(art['compression'])}, expected "gzip"`);
    if (art['format'] !== undefined && art['format'] !== 'plain-sql' && art['format'] !== 'pg-custom' && !(nativeName && art['format'] === 'vcsa-native')) fail(`${at}.format`, `${JSON.stringify(art['format'])}, expected "plain-sql" or "pg-custom"`);
    if (algorithm === 'age') {
      const age = enc as Record<string, unknown>;
      const recipients = age['recipients'];
      const passphrase = age['passphrase'];
      if (!Array.isArray(recipients) || !recipients.every((r) => typeof r === 'string')) fail(`${at}.encryption.recipients`, 'not a list of age public keys');
      if (passphrase !== null && (typeof passphrase !== 'object' || (passphrase as Record<string, unknown>)['kdf'] !== 'scrypt')) fail(`${at}.encryption.passphrase`, 'neither null nor { kdf: "scrypt", … }');
      if ((recipients as unknown[]).length === 0 && passphrase === null) fail(`${at}.encryption`, 'names neither recipients nor a passphrase');
    }
  }
  const sse = m['serverSideEncryption'];
  if (sse !== undefined) {
    if (sse === null || typeof sse !== 'object' || Array.isArray(sse)) fail('serverSideEncryption', 'not an object { algorithm, kmsKeyId? }');
    const { algorithm, kmsKeyId } = sse as Record<string, unknown>;
    if (algorithm !== 'AES256' && algorithm !== 'aws:kms') fail('serverSideEncryption.algorithm', `${JSON.stringify(algorithm)}, expected "AES256" or "aws:kms"`);
    if (kmsKeyId !== undefined && (typeof kmsKeyId !== 'string' || kmsKeyId === '' || algorithm !== 'aws:kms')) fail('serverSideEncryption.kmsKeyId', 'a non-empty string, and only with "aws:kms"');
  }
  return value as Manifest;
}
