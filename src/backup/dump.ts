import { createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { finished } from 'node:stream/promises';
import { join } from 'node:path';
import { BackupError } from '../errors.ts';
import type { Executor } from '../executors/executor.ts';
import type { DumpSpec } from '../profiles/profile.ts';
import { shellQuote } from '../profiles/render.ts';
import type { SpoolArtifact } from './spool.ts';

const progressIntervalMs = 250;

/**
 * Runs one dump command while the services are down and lands its output in the spool with as
 * little work as possible in between, so the window is as long as the dump itself (issue 11):
 * - local executor (the worker is on the appliance): the appliance-side shell redirects the
 *   dump straight into the spool file, exactly like the classic `pg_dump > file`; no byte
 *   passes through Node.
 * - ssh, docker: the command's stdout is piped straight into the file, no hashing on the way.
 * The raw dump's sha256 is computed later, by the compression step, which reads the file anyway
 * (after the services are started again). The exit code is checked (the classic script never
 * did); an empty dump is a failure too.
 */
export async function dumpToSpool(
  executor: Executor,
  dump: DumpSpec,
  spoolDir: string,
  options: { timeoutMs: number; signal?: AbortSignal; onBytes?: (bytes: number) => void },
): Promise<SpoolArtifact> {
  const started = Date.now();
  const path = join(spoolDir, dump.file);
  const run = { timeoutMs: options.timeoutMs, ...(options.signal ? { signal: options.signal } : {}) };
  let bytesSoFar: () => Promise<number>;
  let execute: () => Promise<unknown>;
  if (executor.kind === 'local') {
    // A subshell keeps the profile command's `exec`, traps and `set -e` to itself; noclobber
    // and umask make the file new and private, as the spool wants.
    const command = `umask 077; set -C; (\n${dump.dump}\n) > ${shellQuote(path)}`;
    bytesSoFar = () => stat(path).then((s) => s.size, () => 0);
    execute = () => executor.run(command, run);
  } else {
    const file = createWriteStream(path, { flags: 'wx', mode: 0o600, highWaterMark: 1024 * 1024 });
    bytesSoFar = () => Promise.resolve(file.bytesWritten);
    execute = async () => {
      const written = finished(file);
      try {
        await executor.run(dump.dump, { ...run, stdout: file });
      } catch (err) {
        file.destroy();
        await written.catch(() => undefined);
        throw err;
      }
      await written;
    };
  }
  // Progress readers (terminal, Redis) need a few updates a second, not one per chunk.
  const onBytes = options.onBytes;
  const progress = onBytes
    ? setInterval(() => {
        void bytesSoFar().then(onBytes, () => undefined);
      }, progressIntervalMs)
    : undefined;
  try {
    await execute();
  } finally {
    if (progress) clearInterval(progress);
  }
  const rawBytes = (await stat(path)).size;
  if (rawBytes === 0) {
    throw new BackupError('DUMP_EMPTY', `the ${dump.name} dump on ${executor.description} produced no data although it exited 0; check the profile's dump command`);
  }
  onBytes?.(rawBytes);
  return { name: dump.name, file: dump.file, format: dump.format, rawBytes, dumpMs: Date.now() - started };
}
