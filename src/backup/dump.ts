import { createWriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { join } from 'node:path';
import { BackupError } from '../errors.ts';
import type { Executor } from '../executors/executor.ts';
import type { DumpSpec } from '../profiles/profile.ts';
import { HashingStream } from '../hashing.ts';
import type { SpoolArtifact } from './spool.ts';

const progressIntervalMs = 250;

/**
 * Runs one dump command and streams its stdout into the spool, hashing on the way. The exit
 * code is checked (the classic script never did); an empty dump is a failure too.
 */
export async function dumpToSpool(
  executor: Executor,
  dump: DumpSpec,
  spoolDir: string,
  options: { timeoutMs: number; signal?: AbortSignal; onBytes?: (bytes: number) => void },
): Promise<SpoolArtifact> {
  const started = Date.now();
  const path = join(spoolDir, dump.file);
  const file = createWriteStream(path, { flags: 'wx', mode: 0o600 });
  const hasher = new HashingStream();
  if (options.onBytes) {
    // A chunk arrives every 64 KiB; progress readers (terminal, Redis) need a few a second.
    const onBytes = options.onBytes;
    let last = 0;
    hasher.on('data', () => {
      const now = Date.now();
      if (now - last < progressIntervalMs) return;
      last = now;
      onBytes(hasher.bytes);
    });
  }
  hasher.pipe(file);
  const written = finished(file);
  try {
    await executor.run(dump.dump, { stdout: hasher, timeoutMs: options.timeoutMs, ...(options.signal ? { signal: options.signal } : {}) });
  } catch (err) {
    hasher.destroy();
    file.destroy();
    await written.catch(() => undefined);
    throw err;
  }
  await written;
  if (hasher.bytes === 0) {
    throw new BackupError('DUMP_EMPTY', `the ${dump.name} dump on ${executor.description} produced no data although it exited 0; check the profile's dump command`);
  }
  return { name: dump.name, file: dump.file, format: dump.format, rawBytes: hasher.bytes, rawSha256: hasher.digest(), dumpMs: Date.now() - started };
}
