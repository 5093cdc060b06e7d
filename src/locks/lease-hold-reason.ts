import type { LeaseEntry } from './fleet-lease.ts';

/**
 * Why an appliance still holds the fleet slot, in one line for `status` and the dashboard, or
 * null while it is simply being worked on (a live holder renewing its lease).
 */
export function leaseHoldReason(entry: LeaseEntry, now: number): string | null {
  if (entry.expiresAt > now && !entry.abandoned) return null;
  const parts: string[] = [];
  parts.push(entry.abandoned ? `left to the watchdog: ${entry.abandoned.reason}` : 'its holder stopped renewing the lease (worker dead or cut off)');
  if (entry.rescuer) parts.push(`the watchdog ${entry.rescuer} is starting its services`);
  if (entry.rescueFailures) {
    const next = entry.nextRescueAt !== undefined && entry.nextRescueAt > now ? `; next try in ${Math.ceil((entry.nextRescueAt - now) / 1000)} s` : '';
    parts.push(`the watchdog failed ${entry.rescueFailures} time${entry.rescueFailures === 1 ? '' : 's'} to start its services (${entry.lastRescueError ?? 'unknown error'})${next}`);
    parts.push(`once you have checked the appliance: vcsa-backup lease release --target ${entry.target} --force`);
  }
  return parts.join('; ');
}
