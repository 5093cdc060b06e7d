import { createReadStream, createWriteStream } from 'node:fs';
import { access, readFile, rename, writeFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { HashingStream } from './hashing.ts';

export interface CompressedFile {
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
}

/**
 * gzip a spooled dump next to itself, once. The result's size and sha256 are kept in a sidecar
 * so that a retried upload does not compress again. Written under a temporary name and renamed:
 * a crash mid-compression leaves no file that looks finished.
 */
export async function compressOnce(rawPath: string, level: number, signal?: AbortSignal): Promise<CompressedFile> {
  const path = `${rawPath}.gz`;
  const sidecar = `${path}.json`;
  try {
    await access(path);
    const done = JSON.parse(await readFile(sidecar, 'utf8')) as { bytes: number; sha256: string };
    return { path, bytes: done.bytes, sha256: done.sha256 };
  } catch {
    // not compressed yet (or interrupted): do it now
  }
  const tmp = `${path}.tmp`;
  const hasher = new HashingStream();
  await pipeline(createReadStream(rawPath), createGzip({ level }), hasher, createWriteStream(tmp, { mode: 0o600 }), signal ? { signal } : {});
  const result = { bytes: hasher.bytes, sha256: hasher.digest() };
  await writeFile(sidecar, JSON.stringify(result));
  await rename(tmp, path);
  return { path, ...result };
}
