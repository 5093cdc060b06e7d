import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { AbortedError } from '../errors.ts';

/**
 * gzip on every core: the file is cut into blocks, each block is compressed in a worker thread
 * into a complete gzip member, and the members are written in order. Concatenated members are
 * one valid gzip file (RFC 1952 §2.2): `gunzip`, `zcat | psql` and Node's gunzip read it whole.
 * Independent blocks of 2 MiB cost about 0.1 % of compression ratio against one stream.
 * The raw bytes and the output are hashed (sha256) on the way, on the main thread, in order.
 */
export interface ParallelGzipOptions {
  readonly level: number;
  /** Worker threads; 0 = one per core (os.availableParallelism()). */
  readonly threads: number;
  readonly signal?: AbortSignal | undefined;
  /** Bytes per gzip member (default 2 MiB). */
  readonly blockBytes?: number;
}

export interface ParallelGzipResult {
  readonly bytes: number;
  readonly sha256: string;
  readonly rawBytes: number;
  readonly rawSha256: string;
}

const defaultBlockBytes = 2 * 1024 * 1024;
const gzipAsync = promisify(gzip);

// CommonJS, evaluated in the worker: no loader (tsx) is needed there. Both buffers come from the
// main thread and go back to it (transferred, never copied), so a gigabyte of input allocates
// nothing new there. gzipSync's own result is the one allocation per block: a young-generation
// collection after each block frees it at once, where V8 would otherwise let tens of MiB of dead
// buffers pile up per thread before collecting (memory goal, issue 11).
const workerSource = `
const { parentPort } = require('node:worker_threads');
const { gzipSync } = require('node:zlib');
let collect = null;
try {
  require('node:v8').setFlagsFromString('--expose-gc');
  collect = require('node:vm').runInNewContext('gc');
} catch {}
parentPort.on('message', (m) => {
  const gz = gzipSync(new Uint8Array(m.input, 0, m.len), { level: m.level });
  let output = m.output;
  // Larger than the deflate bound only if zlib changed: a buffer of its own then.
  if (gz.length > output.byteLength) output = new ArrayBuffer(gz.length);
  new Uint8Array(output).set(gz);
  parentPort.postMessage({ id: m.id, input: m.input, output, len: gz.length }, [m.input, output]);
  if (typeof collect === 'function') collect({ type: 'minor' });
});
`;

export function compressionThreads(configured: number): number {
  return configured > 0 ? configured : availableParallelism();
}

/** One block's input buffer and the buffer its gzip member is written into; reused block after block. */
interface BlockBuffers {
  input: ArrayBuffer;
  output: ArrayBuffer;
}

/** deflateBound for a block, with room for the gzip header and trailer. */
function outputBytesFor(blockBytes: number): number {
  return blockBytes + (blockBytes >> 10) + 1024;
}

class GzipPool {
  readonly #workers: Worker[] = [];
  readonly #pending = new Map<number, { resolve: (r: { buffers: BlockBuffers; len: number }) => void; reject: (e: unknown) => void }>();
  #next = 0;
  #failure: Error | undefined;

  constructor(threads: number) {
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(workerSource, { eval: true });
      worker.on('message', (m: { id: number; input: ArrayBuffer; output: ArrayBuffer; len: number }) => {
        const p = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        p?.resolve({ buffers: { input: m.input, output: m.output }, len: m.len });
      });
      const fail = (err: Error): void => {
        this.#failure ??= err;
        for (const p of this.#pending.values()) p.reject(err);
        this.#pending.clear();
      };
      worker.on('error', fail);
      worker.on('exit', (code) => {
        if (code !== 0) fail(new Error(`a gzip worker thread exited with code ${code}`));
      });
      this.#workers.push(worker);
    }
  }

  /**
   * Compresses the first `len` bytes of `buffers.input` into one gzip member in `buffers.output`.
   * Both are handed to the worker and come back with the result (the output may be replaced).
   */
  compress(buffers: BlockBuffers, len: number, level: number): Promise<{ buffers: BlockBuffers; len: number }> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#next++;
    const worker = this.#workers[id % this.#workers.length];
    if (!worker) throw new Error('unreachable: gzip pool without workers');
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ id, input: buffers.input, output: buffers.output, len, level }, [buffers.input, buffers.output]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}

/** Compresses `source` into `dest` (a new file, mode 0600) as concatenated gzip members. */
export async function gzipFileParallel(source: string, dest: string, options: ParallelGzipOptions): Promise<ParallelGzipResult> {
  const { level, signal } = options;
  const blockBytes = options.blockBytes ?? defaultBlockBytes;
  const rawHash = createHash('sha256');
  const outHash = createHash('sha256');
  let rawBytes = 0;
  let bytes = 0;
  const input = await open(source, 'r');
  let output;
  try {
    output = await open(dest, 'wx', 0o600);
  } catch (err) {
    await input.close();
    throw err;
  }
  const write = async (gz: Uint8Array): Promise<void> => {
    outHash.update(gz);
    bytes += gz.length;
    let off = 0;
    while (off < gz.length) off += (await output.write(gz, off, gz.length - off)).bytesWritten;
  };
  // Memory: 2 blocks per thread in flight, each an input and an output buffer allocated once
  // and reused (about 17 MiB on 2 cores), whatever the file's size.
  const size = (await input.stat()).size;
  const threads = Math.max(1, Math.min(compressionThreads(options.threads), Math.ceil(size / blockBytes)));
  const pool = size > blockBytes ? new GzipPool(threads) : null;
  const spare: BlockBuffers[] = [];
  const inflight: Promise<{ buffers: BlockBuffers; len: number } | Uint8Array>[] = [];
  try {
    let position = 0;
    let eof = false;
    for (;;) {
      if (signal?.aborted) throw new AbortedError(`compression of ${source}`, signal.reason);
      while (!eof && inflight.length < threads * 2) {
        // Without a pool (a file of one block) there is nothing to hand back: no output buffer, and an input of the file's size.
        const buffers = spare.pop() ?? (pool ? { input: new ArrayBuffer(blockBytes), output: new ArrayBuffer(outputBytesFor(blockBytes)) } : { input: new ArrayBuffer(Math.max(1, size)), output: new ArrayBuffer(0) });
        const block = new Uint8Array(buffers.input);
        const { bytesRead } = await input.read(block, 0, block.length, position);
        if (bytesRead === 0) {
          eof = true;
          break;
        }
        position += bytesRead;
        rawBytes += bytesRead;
        rawHash.update(block.subarray(0, bytesRead));
        inflight.push(pool ? pool.compress(buffers, bytesRead, level) : gzipAsync(block.subarray(0, bytesRead), { level }));
      }
      const next = inflight.shift();
      if (!next) break;
      const done = await next;
      if (done instanceof Uint8Array) {
        await write(done);
      } else {
        await write(new Uint8Array(done.buffers.output, 0, done.len));
        spare.push(done.buffers);
      }
    }
    // An empty file is one empty member, as `gzip` writes it.
    if (rawBytes === 0) await write(await gzipAsync(Buffer.alloc(0), { level }));
  } finally {
    // Settle what is still in flight (after a failure) before the pool goes away.
    await Promise.allSettled(inflight);
    await pool?.close();
    await input.close();
    await output.close();
  }
  return { bytes, sha256: outHash.digest('hex'), rawBytes, rawSha256: rawHash.digest('hex') };
}
