import { BackupError, errorMessage } from '../errors.ts';
import type { Secret } from '../config/secret.ts';
import { webhookBody, type Notification, type WebhookFormat } from './notification.ts';

export interface WebhookOptions {
  /** A Secret: webhook URLs often carry their credentials in the path. */
  readonly url: Secret;
  readonly format: WebhookFormat;
  readonly timeoutMs: number;
}

export type NotificationSender = (n: Notification) => Promise<void>;

/**
 * POSTs a notification. Rejects on a network error, a timeout or a non-2xx answer, with a
 * message that never includes the URL.
 */
export function webhookSender(options: WebhookOptions): NotificationSender {
  return async (n) => {
    let res: Response;
    try {
      res = await fetch(options.url.reveal(), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'vcsa-backup' },
        body: webhookBody(n, options.format),
        redirect: 'error',
        signal: AbortSignal.timeout(options.timeoutMs),
      });
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
      const why = `${errorMessage(err)}${cause}`.split(options.url.reveal()).join('<webhook url>');
      throw new BackupError('WEBHOOK_FAILED', `webhook (${options.url.source}) not reached: ${why}`);
    }
    // Drain the body so the connection can be reused or closed.
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok) throw new BackupError('WEBHOOK_FAILED', `webhook (${options.url.source}) answered HTTP ${res.status}`);
  };
}
