import { createReadStream, createWriteStream } from 'node:fs';
import { access, readFile, rename, writeFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { HashingStream } from '../hashing.ts';

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

/** gzip a spooled dump next to itself (`<file>.gz`), once. */
export function compressOnce(rawPath: string, level: number, signal?: AbortSignal): Promise<CompressedFile> {
  return transformFileOnce(rawPath, `${rawPath}.gz`, () => ({ transform: createGzip({ level }), record: {} }), { signal });
}
