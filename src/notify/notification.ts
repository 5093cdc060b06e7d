/**
 * What the webhook is told. `kind` is stable (for routing in the receiver); `text` is one line
 * for humans, which is all a Slack-compatible incoming webhook shows.
 */
export type NotificationKind = 'failure' | 'recovery' | 'stale' | 'fleet-held';

export interface Notification {
  readonly kind: NotificationKind;
  readonly target: string;
  /** When it happened (ISO 8601). */
  readonly at: string;
  readonly text: string;
  /** failure: the error code and message of the last attempt. */
  readonly code?: string;
  readonly message?: string;
  /** recovery: the backup that succeeded; stale: the last good one, if any. */
  readonly backupId?: string;
  /** stale: when the last good backup completed (absent: never) and the threshold. */
  readonly lastSuccessAt?: string;
  readonly staleHours?: number;
}

/**
 * fleet-held: an appliance was stopped and its services could not be confirmed running, so it
 * keeps the fleet quiesce slot (no other appliance may stop) until the watchdog restarts it or an
 * operator frees it (`vcsa-backup lease release --target NAME --force`).
 */
export function fleetHeldNotification(target: string, held: { at: string; message: string }): Notification {
  return {
    kind: 'fleet-held',
    target,
    at: held.at,
    message: held.message,
    text: `:rotating_light: vcsa-backup: ${target} holds the fleet quiesce slot, its services not confirmed running: ${held.message}. No other appliance is backed up until the watchdog restarts it or an operator who checked it runs \`vcsa-backup lease release --target ${target} --force\``,
  };
}

export type WebhookFormat = 'json' | 'slack';

export function webhookBody(n: Notification, format: WebhookFormat): string {
  if (format === 'slack') return JSON.stringify({ text: n.text });
  return JSON.stringify({ source: 'vcsa-backup', ...n });
}

export function failureNotification(target: string, failure: { at: string; code: string; message: string }): Notification {
  return { kind: 'failure', target, at: failure.at, code: failure.code, message: failure.message, text: `:red_circle: vcsa-backup: backup of ${target} FAILED (${failure.code}): ${failure.message}` };
}

export function recoveryNotification(target: string, success: { id: string; at: string }): Notification {
  return { kind: 'recovery', target, at: success.at, backupId: success.id, text: `:large_green_circle: vcsa-backup: ${target} recovered: backup ${success.id} succeeded after earlier failures` };
}

export function staleNotification(target: string, lastSuccess: { id: string; at: string } | null, staleHours: number, now: number): Notification {
  const since = lastSuccess ? `since ${lastSuccess.at} (${Math.floor((now - Date.parse(lastSuccess.at)) / 3600_000)} h)` : 'ever';
  return {
    kind: 'stale',
    target,
    at: new Date(now).toISOString(),
    staleHours,
    ...(lastSuccess ? { backupId: lastSuccess.id, lastSuccessAt: lastSuccess.at } : {}),
    text: `:warning: vcsa-backup: no good backup of ${target} ${since}; the threshold is ${staleHours} h`,
  };
}
