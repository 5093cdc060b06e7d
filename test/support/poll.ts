import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { BackupError } from '../../src/errors.ts';

/**
 * Small test helpers with no heavy imports (no bullmq, no simulator), so any test file can use
 * them without paying for their start-up.
 */

/**
 * Polls until `check` returns a truthy value; fails with `what` after `timeoutMs`. The default
 * cap is generous: it only decides how long a broken test hangs, and a loaded 2-core machine
 * running the whole suite is several times slower than an idle one.
 */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 120_000, pollMs = 100): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(pollMs);
  }
}

/** Awaits a promise that must reject with a BackupError of this code; returns the error. */
export async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<BackupError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof BackupError, `expected a BackupError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return err;
  }
  return assert.fail(`expected a rejection with ${code}, but it resolved`);
}
