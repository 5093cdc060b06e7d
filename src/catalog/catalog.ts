import { manifestFileName, manifestLocation, parseBackupId, parseManifest, targetPrefix, type Manifest } from '../backup/manifest.ts';
import { BackupError, errorCode, errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ObjectStore } from '../storage/object-store.ts';

/**
 * What is stored for one target, read from the bucket itself (the bucket is the source of
 * truth: Redis may have been flushed, and several fleets may share one bucket). A backup is
 * listed only when its manifest.json exists and parses (invariant 5).
 */
export interface CatalogEntry {
  readonly id: string;
  /** When the backup was taken (the manifest's createdAt). */
  readonly at: Date;
  readonly manifestKey: string;
  readonly manifest: Manifest;
  /** Sum of the stored artifacts' sizes. */
  readonly bytes: number;
}

/** Every object under one backup id, and whether its manifest exists. */
export interface StoredBackup {
  readonly id: string;
  readonly keys: readonly string[];
  readonly manifestKey: string | null;
  /** Newest LastModified among its objects: how long ago anything was written there. */
  readonly lastModified: Date;
  readonly bytes: number;
}

/** Groups the objects under `<prefix>/<target>/` by backup id. */
export async function scanTarget(store: ObjectStore, prefix: string, target: string): Promise<StoredBackup[]> {
  const root = targetPrefix(prefix, target);
  const groups = new Map<string, { keys: string[]; manifestKey: string | null; lastModified: number; bytes: number }>();
  for await (const object of store.list(root)) {
    const rest = object.key.slice(root.length);
    const slash = rest.indexOf('/');
    // Objects directly under the target prefix belong to no backup; they are not ours to judge.
    if (slash <= 0) continue;
    const id = rest.slice(0, slash);
    let group = groups.get(id);
    if (!group) {
      group = { keys: [], manifestKey: null, lastModified: 0, bytes: 0 };
      groups.set(id, group);
    }
    group.keys.push(object.key);
    group.bytes += object.bytes;
    group.lastModified = Math.max(group.lastModified, object.lastModified.getTime());
    if (rest.slice(slash + 1) === manifestFileName) group.manifestKey = object.key;
  }
  return [...groups.entries()].map(([id, g]) => ({ id, keys: g.keys, manifestKey: g.manifestKey, lastModified: new Date(g.lastModified), bytes: g.bytes }));
}

export async function readManifest(store: ObjectStore, key: string): Promise<Manifest> {
  const body = await store.getBytes(key);
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new Error(`${key}: not valid JSON (${errorMessage(err)})`);
  }
  return parseManifest(value, key);
}

function entryFor(manifest: Manifest, key: string): CatalogEntry {
  const created = new Date(manifest.createdAt);
  const at = Number.isNaN(created.getTime()) ? (parseBackupId(manifest.id) ?? new Date(0)) : created;
  return { id: manifest.id, at, manifestKey: key, manifest, bytes: manifest.artifacts.reduce((sum, a) => sum + a.bytes, 0) };
}

/** Newest first; ties (same instant) by id, which sorts like time. */
export function newestFirst<T extends { readonly id: string; readonly at: Date }>(a: T, b: T): number {
  return b.at.getTime() - a.at.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

export interface ListOptions {
  readonly logger?: Logger;
  /**
   * Called for a manifest that exists but cannot be read or parsed, or that fails the strict
   * checks (code MANIFEST_INVALID); such backups are not listed.
   */
  readonly onDamaged?: (key: string, reason: string, code: string) => void;
}

/**
 * The manifests of the scanned backups that have one, read a few at a time (they are small; a
 * long history lists quickly). A manifest that cannot be read or parsed is reported to
 * `onDamaged` and left out.
 */
export async function readManifests(store: ObjectStore, stored: readonly StoredBackup[], options: ListOptions = {}): Promise<{ stored: StoredBackup & { manifestKey: string }; manifest: Manifest }[]> {
  const withManifest = stored.filter((s): s is StoredBackup & { manifestKey: string } => s.manifestKey !== null);
  const read: { stored: StoredBackup & { manifestKey: string }; manifest: Manifest }[] = [];
  for (let i = 0; i < withManifest.length; i += 8) {
    const batch = withManifest.slice(i, i + 8);
    const results = await Promise.allSettled(batch.map((s) => readManifest(store, s.manifestKey)));
    results.forEach((result, j) => {
      const s = batch[j];
      if (!s) return;
      if (result.status === 'fulfilled') {
        read.push({ stored: s, manifest: result.value });
      } else {
        const reason = errorMessage(result.reason);
        const code = errorCode(result.reason);
        options.logger?.warn({ manifestKey: s.manifestKey, code, reason }, 'manifest unreadable or invalid; backup not listed');
        options.onDamaged?.(s.manifestKey, reason, code);
      }
    });
  }
  return read;
}

/** Complete backups of a target (those with a readable manifest), newest first. */
export async function listBackups(store: ObjectStore, prefix: string, target: string, options: ListOptions = {}): Promise<CatalogEntry[]> {
  const read = await readManifests(store, await scanTarget(store, prefix, target), options);
  return read.map((r) => entryFor(r.manifest, r.stored.manifestKey)).sort(newestFirst);
}

/**
 * One backup by id, or the newest with 'latest'. A wrong id is bad input (exit 2): the error
 * names the ids that do exist.
 */
export async function findBackup(store: ObjectStore, prefix: string, target: string, id: string, options: ListOptions = {}): Promise<CatalogEntry> {
  const damaged: { id: string; key: string; reason: string; code: string }[] = [];
  const entries = await listBackups(store, prefix, target, {
    ...options,
    onDamaged: (key, reason, code) => {
      damaged.push({ id: manifestLocation(key)?.id ?? '', key, reason, code });
      options.onDamaged?.(key, reason, code);
    },
  });
  const refuse = (d: { key: string; reason: string; code: string }, why: string): never => {
    throw new BackupError(d.code === 'MANIFEST_INVALID' ? 'MANIFEST_INVALID' : 'MANIFEST_UNREADABLE', `${why}: ${d.reason}`, { permanent: true, details: { manifestKey: d.key } });
  };
  const asked = damaged.find((d) => d.id === id);
  if (asked) refuse(asked, `--backup ${id}: its manifest cannot be trusted`);
  if (id === 'latest') {
    // "latest" must not quietly fall back to an older backup when the newest one is damaged or
    // crafted: the operator asked for the newest, and would restore something older unawares.
    const newest = entries[0];
    const newer = damaged.find((d) => parseBackupId(d.id) === null || newest === undefined || d.id > newest.id);
    if (newer) refuse(newer, `--backup latest: the newest manifest of ${target} cannot be trusted (pass --backup ID to choose an older backup)`);
  }
  if (entries.length === 0) {
    throw new BackupError('BACKUP_NOT_FOUND', `no complete backup of ${target} in ${store.description} (under ${targetPrefix(prefix, target)}); run \`vcsa-backup backup --target ${target}\` first`, { permanent: true });
  }
  if (id === 'latest') return entries[0] as CatalogEntry;
  const found = entries.find((e) => e.id === id);
  if (found) return found;
  const shown = entries.slice(0, 10).map((e) => e.id);
  const more = entries.length > shown.length ? ` (and ${entries.length - shown.length} older)` : '';
  throw new BackupError('BACKUP_NOT_FOUND', `--backup: no complete backup "${id}" of ${target}; available: ${shown.join(', ')}${more}, or "latest"`, { permanent: true });
}

/** The `backups[]` entry of `list --json` (DESIGN §6). */
export function catalogJson(entry: CatalogEntry): Record<string, unknown> {
  const m = entry.manifest;
  return {
    id: entry.id,
    at: entry.at.toISOString(),
    manifestKey: entry.manifestKey,
    target: m.target,
    profile: m.profile,
    appliance: m.appliance,
    completedAt: m.completedAt,
    quiesceMs: m.quiesce?.ms ?? null,
    bytes: entry.bytes,
    encrypted: m.artifacts.some((a) => a.encryption !== null && a.encryption !== undefined),
    artifacts: m.artifacts.map((a) => ({
      name: a.name,
      file: a.file,
      key: a.key,
      bytes: a.bytes,
      sha256: a.sha256,
      rawBytes: a.rawBytes,
      compression: a.compression,
      encryption: a.encryption ?? null,
      format: a.format,
    })),
  };
}
