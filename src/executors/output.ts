import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { maxCollectBytes, stderrTailBytes, type RunOptions } from './executor.ts';

/**
 * Keeps only the last bytes of a stream. Commands like pg_dump can write megabytes of notices;
 * the end is what explains a failure.
 */
export class StderrTail {
  readonly #limit: number;
  #chunks: Buffer[] = [];
  #bytes = 0;

  constructor(limit: number = stderrTailBytes) {
    this.#limit = limit;
  }

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    while (this.#chunks.length > 1 && this.#bytes - (this.#chunks[0]?.length ?? 0) >= this.#limit) {
      this.#bytes -= this.#chunks.shift()?.length ?? 0;
    }
  }

  toString(): string {
    const all = Buffer.concat(this.#chunks);
    return all.subarray(Math.max(0, all.length - this.#limit)).toString('utf8');
  }
}

/** Collects stdout for commands whose output is small (status checks, versions). */
export class StdoutCollector extends Writable {
  #chunks: Buffer[] = [];
  #bytes = 0;

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    // Past the cap the rest is drained and dropped: the command must not block on a full pipe.
    if (this.#bytes < maxCollectBytes) {
      const room = maxCollectBytes - this.#bytes;
      const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
      this.#chunks.push(kept);
      this.#bytes += kept.length;
    }
    callback();
  }

  text(): string {
    return Buffer.concat(this.#chunks).toString('utf8');
  }
}

/**
 * Streams a command's stdout into `options.stdout` (or a collector) with backpressure, and
 * settles once the destination has been ended (or, with `endStdout: false`, once the last byte
 * has been handed to it). Rejects when the destination fails, e.g. a full spool disk.
 */
export function streamStdout(source: Readable, options: RunOptions): { done: Promise<void>; collected: () => string } {
  if (options.stdout) {
    return { done: pipeline(source, options.stdout, { end: options.endStdout ?? true }), collected: () => '' };
  }
  const collector = new StdoutCollector();
  return { done: pipeline(source, collector), collected: () => collector.text() };
}

/** A closed stdin on the far side (the command did not read it all) is not an error of the run. */
export function isBrokenPipe(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNRESET' || code === 'ERR_STREAM_DESTROYED';
}
