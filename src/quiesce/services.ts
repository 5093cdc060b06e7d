import { BackupError, combineErrors, errorMessage } from '../errors.ts';
import type { Executor } from '../executors/executor.ts';
import type { Logger } from '../log.ts';
import type { ServiceSpec } from '../profiles/profile.ts';

export interface ServiceOptions {
  readonly executor: Executor;
  readonly services: readonly ServiceSpec[];
  readonly timeoutMs: number;
  readonly logger: Logger;
}

/** The undo of a stop: starts the services again and confirms they run. Never takes an AbortSignal: it must finish. */
export type ServiceRestart = () => Promise<void>;

/**
 * Stops the services in profile order and returns the undo that starts them again. If a stop
 * fails half way, the services already stopped — and the one that failed, which may be half
 * down — are started before the error is thrown: nothing is left quiesced.
 */
export async function stopServices(options: ServiceOptions, signal?: AbortSignal): Promise<ServiceRestart> {
  const { executor, services, timeoutMs, logger } = options;
  const touched: ServiceSpec[] = [];
  const start: ServiceRestart = () => startServices({ ...options, services: touched.slice().reverse() });
  try {
    for (const service of services) {
      signal?.throwIfAborted();
      touched.push(service);
      logger.info({ service: service.name }, 'stopping service');
      await executor.run(service.stop, { timeoutMs });
    }
  } catch (err) {
    logger.error({ err }, 'stopping services failed; starting them again');
    try {
      await start();
    } catch (undoErr) {
      throw combineErrors(err, [undoErr]);
    }
    throw err;
  }
  return start;
}

/**
 * Starts services in the given order and checks each runs. Every service gets its start even if
 * an earlier one failed; each is tried up to three times, then SERVICES_NOT_RUNNING says which.
 */
export async function startServices(options: ServiceOptions): Promise<void> {
  const { executor, services, timeoutMs, logger } = options;
  const failed: string[] = [];
  for (const service of services) {
    let lastError: unknown;
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        logger.info({ service: service.name, attempt }, 'starting service');
        await executor.run(service.start, { timeoutMs });
        const status = await executor.run(service.status, { timeoutMs, check: false });
        if (status.exitCode === 0) {
          lastError = undefined;
          break;
        }
        lastError = new Error(`status exited ${status.exitCode}${status.stderrTail ? `: ${status.stderrTail.trim()}` : ''}`);
      } catch (err) {
        lastError = err;
      }
      logger.warn({ service: service.name, attempt, err: lastError }, 'service did not come up');
    }
    if (lastError !== undefined) failed.push(`${service.name} (${errorMessage(lastError)})`);
  }
  if (failed.length > 0) {
    throw new BackupError(
      'SERVICES_NOT_RUNNING',
      `services did not start on ${executor.description}: ${failed.join('; ')}. Start them by hand on the appliance and check its logs.`,
    );
  }
}

/** Names of the services that are not running (status exit code non-zero). */
export async function servicesNotRunning(options: ServiceOptions): Promise<string[]> {
  const down: string[] = [];
  for (const service of options.services) {
    const status = await options.executor.run(service.status, { timeoutMs: options.timeoutMs, check: false });
    if (status.exitCode !== 0) down.push(service.name);
  }
  return down;
}
