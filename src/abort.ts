import { AbortedError } from './errors.ts';

/**
 * The one cancellation check. Call it before starting something, and in a `catch` before mapping
 * the error: a failure that follows an abort is the abort's echo (a destroyed stream, a cancelled
 * request), and the caller must see ABORTED rather than a network or storage error.
 */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new AbortedError(what, signal.reason);
}

/**
 * Resolves when `signal` aborts, and keeps the process alive until then. A bare
 * `once(signal, 'abort')` holds nothing on the event loop: when nothing else does (no server, no
 * open socket — e.g. `simulate --s3-endpoint`), Node ends the process in the middle of the
 * await (exit 13, "unfinished top-level await") and the command's cleanup never runs.
 */
export async function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  const keepAlive = setInterval(() => undefined, 1 << 30);
  try {
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  } finally {
    clearInterval(keepAlive);
  }
}
