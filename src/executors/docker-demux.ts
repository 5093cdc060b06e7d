import { Transform, type TransformCallback } from 'node:stream';

/**
 * Splits Docker's multiplexed exec stream (8-byte frame headers: stream type, then length) into
 * stdout, which it passes on as a stream with backpressure, and stderr, which it hands to
 * `onStderr`. dockerode's own demuxStream ignores backpressure, so a 10 GB dump into a slow
 * spool would be buffered in memory.
 */
export class DockerDemux extends Transform {
  readonly #onStderr: (chunk: Buffer) => void;
  #pending: Buffer = Buffer.alloc(0);
  /** Type and remaining bytes of the frame being read, when inside one. */
  #frame: { type: number; remaining: number } | undefined;
  #discardStdout = false;

  constructor(onStderr: (chunk: Buffer) => void) {
    super();
    this.#onStderr = onStderr;
  }

  /**
   * From now on stdout is dropped while stderr is still handed on: for when stdout's destination
   * failed and the command is being stopped, whose pid may still be on its way on stderr.
   */
  discardStdout(): void {
    this.#discardStdout = true;
    this.resume();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let data = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = Buffer.alloc(0);
    while (data.length > 0) {
      if (!this.#frame) {
        if (data.length < 8) {
          this.#pending = data;
          break;
        }
        const type = data.readUInt8(0);
        if (type > 2) {
          callback(new Error(`unexpected Docker stream frame type ${type}; was the exec created with a TTY?`));
          return;
        }
        this.#frame = { type, remaining: data.readUInt32BE(4) };
        data = data.subarray(8);
        continue;
      }
      const take = Math.min(this.#frame.remaining, data.length);
      const payload = data.subarray(0, take);
      if (this.#frame.type === 2) this.#onStderr(payload);
      else if (payload.length > 0 && !this.#discardStdout) this.push(payload);
      this.#frame.remaining -= take;
      if (this.#frame.remaining === 0) this.#frame = undefined;
      data = data.subarray(take);
    }
    callback();
  }
}
