import type { LeaseEntry } from '../locks/fleet-lease.ts';
import { leaseHoldReason } from '../locks/lease-hold-reason.ts';
import type { CurrentStep, LastVerify, TargetState } from '../state/fleet-state.ts';

/**
 * What the fleet page, /api/fleet and /metrics show: one data model built from the fleet state
 * in Redis, so the three never disagree.
 */
export interface QueueDepth {
  readonly queue: string;
  readonly waiting: number;
  readonly active: number;
  readonly delayed: number;
  readonly failed: number;
}

export interface FleetRow {
  readonly name: string;
  readonly lastGood: {
    readonly id: string;
    readonly at: string;
    readonly ageSeconds: number;
    /** Older than the threshold: highlighted on the page. */
    readonly stale: boolean;
    readonly bytes: number;
    readonly rawBytes: number;
    /** The downtime: how long the appliance's services were stopped. */
    readonly quiesceMs: number;
    readonly durationMs: number;
    readonly manifestKey: string;
  } | null;
  /** True when there is no good backup at all, or the last one is older than the threshold. */
  readonly stale: boolean;
  readonly step: CurrentStep | null;
  readonly lastFailure: {
    readonly at: string;
    readonly code: string;
    readonly message: string;
    /** Newer than the last good backup: the appliance is failing now. */
    readonly current: boolean;
  } | null;
  readonly nextRun: string | null;
  readonly lastVerify: LastVerify | null;
  readonly counts: { readonly successes: number; readonly failures: number; readonly retries: number; readonly uploadRetries: number; readonly bytesUploaded: number };
}

export interface LeaseView {
  readonly target: string;
  readonly holder: string;
  readonly since: string;
  /** Its holder stopped renewing; the watchdog restarts the appliance, then frees the slot. */
  readonly expired: boolean;
  readonly rescuer?: string;
  /** Why it still holds the slot (abandoned, failed rescues, backoff), when it is not simply working. */
  readonly why?: string;
}

export interface FleetView {
  readonly generatedAt: string;
  readonly staleHours: number;
  readonly targets: readonly FleetRow[];
  readonly lease: readonly LeaseView[];
  readonly queues: readonly QueueDepth[];
}

export interface FleetViewInput {
  readonly states: readonly TargetState[];
  readonly holders: readonly LeaseEntry[];
  /** Next scheduled run per target, epoch ms. */
  readonly nextRuns: ReadonlyMap<string, number>;
  readonly queues: readonly QueueDepth[];
  readonly staleHours: number;
  readonly now: number;
}

export function buildFleetView(input: FleetViewInput): FleetView {
  const { now } = input;
  const staleMs = input.staleHours * 3600_000;
  const targets = input.states.map((s): FleetRow => {
    const successAt = s.lastSuccess ? Date.parse(s.lastSuccess.at) : null;
    const lastGood = s.lastSuccess
      ? {
          id: s.lastSuccess.id,
          at: s.lastSuccess.at,
          ageSeconds: Math.max(0, Math.round((now - (successAt ?? now)) / 1000)),
          stale: now - (successAt ?? now) > staleMs,
          bytes: s.lastSuccess.bytes,
          rawBytes: s.lastSuccess.rawBytes,
          quiesceMs: s.lastSuccess.quiesceMs,
          durationMs: s.lastSuccess.durationMs,
          manifestKey: s.lastSuccess.manifestKey,
        }
      : null;
    const next = input.nextRuns.get(s.name);
    return {
      name: s.name,
      lastGood,
      stale: lastGood === null || lastGood.stale,
      step: s.step,
      lastFailure: s.lastFailure
        ? {
            at: s.lastFailure.at,
            code: s.lastFailure.code,
            message: s.lastFailure.message,
            current: successAt === null || Date.parse(s.lastFailure.at) > successAt,
          }
        : null,
      nextRun: next === undefined ? null : new Date(next).toISOString(),
      lastVerify: s.lastVerify,
      counts: { successes: s.successes, failures: s.failures, retries: s.retries, uploadRetries: s.uploadRetries, bytesUploaded: s.bytesUploaded },
    };
  });
  const lease = input.holders.map((h): LeaseView => ({
    target: h.target,
    holder: h.holder,
    since: new Date(h.since).toISOString(),
    expired: h.expiresAt <= now,
    ...(h.rescuer ? { rescuer: h.rescuer } : {}),
    ...withWhy(leaseHoldReason(h, now)),
  }));
  return { generatedAt: new Date(now).toISOString(), staleHours: input.staleHours, targets, lease, queues: input.queues };
}

function withWhy(why: string | null): { why?: string } {
  return why === null ? {} : { why };
}
