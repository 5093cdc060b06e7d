import type { TargetConfig } from '../config/load.ts';
import { combineErrors, errorMessage } from '../errors.ts';
import type { Executor } from '../executors/executor.ts';
import type { FleetLease, LeaseGuard, LeaseHandle } from '../locks/fleet-lease.ts';
import type { Logger } from '../log.ts';
import { servicesNotRunning, startServices, stopServices, type ServiceRestart } from './services.ts';

/**
 * The one place where an appliance's services are stopped and started again. Backup (dump, and
 * with quiesce.startServicesAfter: upload the upload too) and restore pass only their work; the
 * watchdog reuses the start-and-confirm half (`startAndConfirm`). In order:
 *
 *   precheck (reach the appliance; nothing taken yet)
 *   → fleet lease (wait for a slot)
 *   → guard → stop services (their undo is kept)
 *   → work, which calls the guard before each step that touches the appliance
 *   → start services and confirm they run (in `finally`: success, failure, cancellation)
 *   → release the slot, or abandon it to the watchdog.
 *
 * The slot is released when nothing was stopped, or when the services are confirmed running.
 * Otherwise (stopped, then not confirmed: a start that failed, an appliance that became
 * unreachable) it is abandoned: the slot stays taken — no other appliance may stop while this
 * one may be down (invariant 1) — and the watchdog starts the services, confirms them and only
 * then frees it (invariant 2).
 */
export interface QuiesceSection {
  /** The fleet lease; null for the single-process `backup` command, which has no fleet. */
  readonly lease: FleetLease | null;
  readonly target: TargetConfig;
  readonly executor: Executor;
  readonly logger: Logger;
  readonly signal?: AbortSignal | undefined;
  /** false: hold the slot but stop nothing (quiesce.enabled: false). Default true. */
  readonly stopServices?: boolean;
  /** How long to wait for a fleet slot (quiesce.waitSeconds). */
  readonly waitMs: number;
  /** Told as each phase begins, for progress reporting. */
  readonly onPhase?: (phase: QuiescePhase) => void;
  /**
   * Told, on failure, what is known about the services once the section is over: [] when
   * running again or never stopped, the names of those down, or null when the appliance could
   * not be asked. Restore uses it to say what is true in its error message.
   */
  readonly onServicesAfterFailure?: (down: string[] | null) => void;
}

export type QuiescePhase = 'precheck' | 'lease' | 'stop' | 'start';

/** What the work gets while the appliance is quiesced. */
export interface Quiesced {
  /** Throws LEASE_LOST once the fleet lease is lost; call before each step that touches the appliance. */
  readonly guard: LeaseGuard;
  /** False when nothing was stopped (quiesce disabled, or a profile without services). */
  readonly servicesStopped: boolean;
}

/** When the services were down: from the stop command to services confirmed running. */
export interface QuiesceWindow {
  readonly stoppedAt: string;
  readonly startedAt: string;
  readonly ms: number;
}

export interface QuiescedResult<T> {
  readonly result: T;
  /** null when nothing was stopped. */
  readonly window: QuiesceWindow | null;
}

const noLeaseGuard: LeaseGuard = { assertHeld: () => Promise.resolve() };

export async function withQuiescedAppliance<T>(section: QuiesceSection, work: (quiesced: Quiesced) => Promise<T>): Promise<QuiescedResult<T>> {
  const { lease, target, executor, logger, signal } = section;
  const phase = section.onPhase ?? (() => undefined);
  const services = target.boundProfile.services;
  const timeoutMs = target.timeouts.serviceSeconds * 1000;

  // Reach the appliance before taking anything: an unreachable host or a refused key fails here,
  // with no slot taken and nothing stopped.
  phase('precheck');
  await executor.run('true', { timeoutMs, ...(signal ? { signal } : {}) });

  let handle: LeaseHandle | null = null;
  if (lease) {
    phase('lease');
    handle = await lease.acquire(target.name, {
      waitMs: section.waitMs,
      ...(signal ? { signal } : {}),
      onWaiting: (holders) => logger.info({ holders: holders.map((h) => h.target) }, 'waiting for a fleet quiesce slot'),
    });
    logger.info({ token: handle.token }, 'fleet quiesce lease acquired');
  }
  const guard = handle?.guard ?? noLeaseGuard;

  const stopping = (section.stopServices ?? true) && services.length > 0;
  let stopAttempted = false;
  let restart: ServiceRestart | null = null;
  let confirmed = false;
  let stopAt = 0;
  let stoppedAt = 0;
  let startedAt = 0;
  let result: T | undefined;
  let failure: unknown;
  let failed = false;
  try {
    await guard.assertHeld('stop');
    if (stopping) {
      phase('stop');
      stopAt = Date.now();
      stopAttempted = true;
      restart = await stopServices({ executor, services, timeoutMs, logger }, signal);
      stoppedAt = Date.now();
    }
    result = await work({ guard, servicesStopped: restart !== null });
  } catch (err) {
    failure = err;
    failed = true;
  } finally {
    if (restart) {
      phase('start');
      try {
        await restart();
        confirmed = true;
        startedAt = Date.now();
      } catch (startErr) {
        failure = failed ? combineErrors(failure, [startErr]) : startErr;
        failed = true;
      }
    }
  }

  // Release or abandon. Ask the appliance rather than infer from the error: a stop that failed
  // half way starts what it stopped, and may or may not have managed to.
  let down: string[] | null = [];
  if (stopAttempted && !confirmed) {
    down = await servicesNotRunning({ executor, services, timeoutMs, logger }).catch(() => null);
  }
  if (handle) {
    if (down !== null && down.length === 0) {
      await handle.release().catch((err: unknown) => logger.warn({ err }, 'fleet lease release failed; it expires and the watchdog frees it'));
    } else {
      const reason =
        down === null
          ? `services of ${target.name} were stopped and could not be confirmed running: the appliance did not answer (${errorMessage(failure)})`
          : `services of ${target.name} not running after the ${failed ? 'failure' : 'work'}: ${down.join(', ')}`;
      logger.error({ down, reason }, 'services not confirmed running; leaving the fleet slot to the watchdog');
      await handle.abandon(reason);
    }
  }
  if (failed) {
    section.onServicesAfterFailure?.(down);
    throw failure;
  }
  return {
    result: result as T,
    window: confirmed ? { stoppedAt: new Date(stoppedAt).toISOString(), startedAt: new Date(startedAt).toISOString(), ms: startedAt - stopAt } : null,
  };
}

/**
 * The start half, for an appliance whose stopper is gone (the watchdog): starts every service
 * of the profile in reverse stop order and confirms each runs; SERVICES_NOT_RUNNING otherwise.
 */
export async function startAndConfirm(options: { target: TargetConfig; executor: Executor; logger: Logger }): Promise<void> {
  const { target, executor, logger } = options;
  await startServices({ executor, services: [...target.boundProfile.services].reverse(), timeoutMs: target.timeouts.serviceSeconds * 1000, logger });
}
