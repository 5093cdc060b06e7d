import { BackupError, combineErrors, errorMessage } from '../errors.ts';
import type { Executor } from '../executors/executor.ts';
import type { Logger } from '../log.ts';
import type { ServiceSpec } from '../profiles/profile.ts';
import { timings } from '../defaults.ts';

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
 * Starts the services in the given order, then confirms each runs (status). The confirmations
 * come after the last start, so they cost time once the appliance is back, not while its
 * services are down (the classic script, stop; dump; start, makes none). A service not
 * confirmed is started again (those still down, in the same order; one already confirmed is
 * left running) up to timings.serviceStartAttempts times in all; one that never comes up does
 * not keep the others from their starts. SERVICES_NOT_RUNNING then says which are down and why.
 */
export async function startServices(options: ServiceOptions): Promise<void> {
  const { executor, services, timeoutMs, logger } = options;
  let down: { service: ServiceSpec; reason: unknown }[] = services.map((service) => ({ service, reason: undefined }));
  for (let attempt = 1; attempt <= timings.serviceStartAttempts && down.length > 0; attempt++) {
    const startErrors = new Map<ServiceSpec, unknown>();
    for (const { service } of down) {
      logger.info({ service: service.name, attempt }, 'starting service');
      await executor.run(service.start, { timeoutMs }).catch((err: unknown) => startErrors.set(service, err));
    }
    const stillDown: typeof down = [];
    for (const { service } of down) {
      const reason = await whyNotRunning(options, service, startErrors.get(service));
      if (reason === null) continue;
      stillDown.push({ service, reason });
      logger.warn({ service: service.name, attempt, err: reason }, 'service did not come up');
    }
    down = stillDown;
  }
  if (down.length > 0) {
    const failed = down.map(({ service, reason }) => `${service.name} (${errorMessage(reason)})`);
    throw new BackupError(
      'SERVICES_NOT_RUNNING',
      `services did not start on ${executor.description}: ${failed.join('; ')}. Start them by hand on the appliance and check its logs.`,
    );
  }
}

/**
 * null when the service's status says it runs; otherwise why not: the start's own error if it
 * had one (it says more than the status that follows it), else the status's exit and stderr.
 */
async function whyNotRunning(options: ServiceOptions, service: ServiceSpec, startError: unknown): Promise<unknown> {
  try {
    const status = await options.executor.run(service.status, { timeoutMs: options.timeoutMs, check: false });
    if (status.exitCode === 0) return null;
    return startError ?? new Error(`status exited ${status.exitCode}${status.stderrTail ? `: ${status.stderrTail.trim()}` : ''}`);
  } catch (err) {
    return startError ?? err;
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
