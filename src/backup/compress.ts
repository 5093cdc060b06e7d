import { createReadStream, createWriteStream } from 'node:fs';
import { access, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { HashingStream } from '../hashing.ts';
import { gzipFileParallel } from './parallel-gzip.ts';

export interface CompressedFile {
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
}

/**
 * Writes `path` from `source` through `transform`, once. The result's size, sha256 and `record`
 * are kept in a sidecar (`<path>.json`), so a retried upload reuses the file instead of writing
 * it again (for encryption: under a new file key, different bytes). Written under a temporary name
 * and renamed after the sidecar: a crash mid-way leaves nothing that looks finished.
 * `isCurrent` rejects a finished file that an older format wrote.
 */
export async function transformFileOnce<R extends object>(
  source: string,
  path: string,
  make: () => { transform: NodeJS.ReadWriteStream; record: R } | Promise<{ transform: NodeJS.ReadWriteStream; record: R }>,
  options: { signal?: AbortSignal | undefined; isCurrent?: (done: R) => boolean } = {},
): Promise<CompressedFile & R> {
  const sidecar = `${path}.json`;
  try {
    await access(path);
    const done = JSON.parse(await readFile(sidecar, 'utf8')) as { bytes: number; sha256: string } & R;
    if (options.isCurrent?.(done) ?? true) return { ...done, path };
  } catch {
    // not written yet (or interrupted): do it now
  }
  const tmp = `${path}.tmp`;
  const { transform, record } = await make();
  const hasher = new HashingStream();
  await pipeline(createReadStream(source), transform, hasher, createWriteStream(tmp, { mode: 0o600 }), options.signal ? { signal: options.signal } : {});
  const result = { ...record, bytes: hasher.bytes, sha256: hasher.digest() };
  await writeFile(sidecar, JSON.stringify(result));
  await rename(tmp, path);
  return { ...result, path };
}

export interface CompressionSettings {
  readonly level: number;
  /** Worker threads; 0 = one per core. */
  readonly threads: number;
}

/** A gzip of a spooled dump, with the raw dump's size and sha256 taken while reading it. */
export interface GzippedDump extends CompressedFile {
  readonly rawBytes: number;
  readonly rawSha256: string;
}

/** Sidecar format: gzip members compressed in parallel, with the raw dump's digest. */
const gzipFormat = 'gzip-members-v1';

/**
 * gzip a spooled dump next to itself (`<file>.gz`) on every core (parallel-gzip.ts), once: the
 * result's size and sha256, and the raw dump's, are kept in a sidecar (`<file>.gz.json`), so a
 * retried upload reuses the file. Written under a temporary name and renamed after the sidecar.
 */
export async function compressOnce(rawPath: string, settings: CompressionSettings | number, signal?: AbortSignal): Promise<GzippedDump> {
  const { level, threads } = typeof settings === 'number' ? { level: settings, threads: 0 } : settings;
  const path = `${rawPath}.gz`;
  const sidecar = `${path}.json`;
  try {
    await access(path);
    const done = JSON.parse(await readFile(sidecar, 'utf8')) as Omit<GzippedDump, 'path'> & { format?: string };
    if (done.format === gzipFormat) return { bytes: done.bytes, sha256: done.sha256, rawBytes: done.rawBytes, rawSha256: done.rawSha256, path };
  } catch {
    // not written yet (or interrupted): do it now
  }
  const tmp = `${path}.tmp`;
  await rm(tmp, { force: true });
  try {
    const result = await gzipFileParallel(rawPath, tmp, { level, threads, signal });
    await writeFile(sidecar, JSON.stringify({ format: gzipFormat, ...result }));
    await rename(tmp, path);
    return { ...result, path };
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
