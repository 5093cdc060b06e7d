/**
 * An ObjectStore decorator for tests: records every completed write and delete, in the order the
 * store finished them — the store's own write log, so a test can check order ("manifest last")
 * without comparing clocks. `onWrite` runs before the put returns to its caller, to capture what
 * held at that moment (are the services running?).
 */
import { ForwardingStore, type ObjectStore, type PutOptions, type PutResult } from '../../src/storage/object-store.ts';

export interface RecordedOp {
  readonly op: 'putFile' | 'putBytes' | 'deleteMany';
  readonly key: string;
}

export class RecordingStore extends ForwardingStore {
  readonly log: RecordedOp[] = [];
  readonly #onWrite: ((key: string) => Promise<void> | void) | undefined;

  constructor(inner: ObjectStore, options: { onWrite?: (key: string) => Promise<void> | void } = {}) {
    super(inner);
    this.#onWrite = options.onWrite;
  }

  /** Keys written, in order. */
  get writes(): string[] {
    return this.log.filter((r) => r.op !== 'deleteMany').map((r) => r.key);
  }

  override async putFile(key: string, localPath: string, options?: PutOptions): Promise<PutResult> {
    const put = await super.putFile(key, localPath, options);
    this.log.push({ op: 'putFile', key });
    await this.#onWrite?.(key);
    return put;
  }

  override async putBytes(key: string, body: Uint8Array, options?: PutOptions): Promise<PutResult> {
    const put = await super.putBytes(key, body, options);
    this.log.push({ op: 'putBytes', key });
    await this.#onWrite?.(key);
    return put;
  }

  override async deleteMany(keys: readonly string[]): Promise<void> {
    await super.deleteMany(keys);
    for (const key of keys) this.log.push({ op: 'deleteMany', key });
  }

  /** Closing the recorder leaves the store it wraps open (tests share one). */
  override close(): void {
    // the wrapped store is shared: its owner closes it
  }
}
