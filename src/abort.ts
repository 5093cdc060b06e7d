import { AbortedError } from './errors.ts';

/**
 * The one cancellation check. Call it before starting something, and in a `catch` before mapping
 * the error: a failure that follows an abort is the abort's echo (a destroyed stream, a cancelled
 * request), and the caller must see ABORTED rather than a network or storage error.
 */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new AbortedError(what, signal.reason);
}
