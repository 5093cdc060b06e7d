import { errorCode, errorMessage } from '../src/errors.ts';

/**
 * How a failed job's stable error code travels through BullMQ's failedReason: the worker writes
 * it, `run --wait` (the producer) reads it. Its own file so the producer does not load the worker.
 */
export function encodeFailure(err: unknown): string {
  return `${errorCode(err)}: ${errorMessage(err)}`;
}

export function decodeFailure(reason: string | undefined): { code: string; message: string } {
  const m = /^([A-Z][A-Z0-9_]+): ([\s\S]*)$/.exec(reason ?? '');
  return m ? { code: m[1] ?? 'INTERNAL', message: m[2] ?? '' } : { code: 'INTERNAL', message: reason ?? 'unknown failure' };
}
