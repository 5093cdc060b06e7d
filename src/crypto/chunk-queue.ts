/**
 * Bytes received but not yet sealed or opened, as the buffers they arrived in: taking a chunk
 * copies only that chunk, so a stream's memory stays about one chunk plus the write in hand.
 */
export class ChunkQueue {
  readonly #buffers: Buffer[] = [];
  #bytes = 0;

  get bytes(): number {
    return this.#bytes;
  }

  push(buffer: Buffer): void {
    if (buffer.length === 0) return;
    this.#buffers.push(buffer);
    this.#bytes += buffer.length;
  }

  /** The first `n` bytes (n ≤ bytes), removed from the queue. */
  take(n: number): Buffer {
    if (n > this.#bytes) throw new Error(`unreachable: take(${n}) with ${this.#bytes} bytes queued`);
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const head = this.#buffers[0];
      if (!head) throw new Error('unreachable: queue shorter than its byte count');
      if (head.length <= need) {
        parts.push(head);
        this.#buffers.shift();
        need -= head.length;
      } else {
        parts.push(head.subarray(0, need));
        this.#buffers[0] = head.subarray(need);
        need = 0;
      }
    }
    this.#bytes -= n;
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, n);
  }
}
