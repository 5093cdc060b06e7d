import type { Redis } from 'ioredis';
import type { Config } from '../config/load.ts';
import { resolveSecret, type Secret } from '../config/secret.ts';
import { ConfigError, errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import { FleetState } from '../state/fleet-state.ts';
import { failureNotification, fleetHeldNotification, recoveryNotification, staleNotification, type Notification } from './notification.ts';
import { webhookSender, type NotificationSender } from './webhook.ts';

/** What a backup job tells the notifier. Implementations never throw and return within their timeout. */
export interface BackupNotifier {
  /** A backup failed for good: its last attempt, or a permanent error. */
  backupFailed(target: string, failure: { at: string; code: string; message: string }): Promise<void>;
  backupSucceeded(target: string, success: { id: string; at: string }): Promise<void>;
}

/** What the watchdog tells the notifier. Never throws. */
export interface FleetHeldNotifier {
  /** An appliance keeps the fleet slot because its services could not be confirmed running. */
  fleetHeld(target: string, held: { at: string; message: string }): Promise<void>;
}

export interface NotifierOptions {
  readonly redis: Redis;
  readonly prefix: string;
  readonly send: NotificationSender;
  /** At most one notification per target and kind in this window; 0 for none. */
  readonly minIntervalSeconds: number;
  readonly staleHours: number;
  readonly logger: Logger;
}

/**
 * Decides what to notify, with its memory in Redis so that any number of workers send each
 * notification once: a `failing` marker per target turns the first success after a final
 * failure into one recovery; a key per stale spell (target + last good backup) makes the
 * periodic stale check alert once per spell (again after a day if it goes on); and a SET NX EX
 * per target and kind rate-limits everything. Sending errors are logged, never thrown.
 */
export class Notifier implements BackupNotifier, FleetHeldNotifier {
  readonly #o: NotifierOptions;
  readonly #state: FleetState;

  constructor(options: NotifierOptions) {
    this.#o = options;
    this.#state = new FleetState(options.redis, options.prefix);
  }

  #key(...parts: string[]): string {
    return [this.#o.prefix, 'notify', ...parts].join(':');
  }

  async backupFailed(target: string, failure: { at: string; code: string; message: string }): Promise<void> {
    try {
      await this.#o.redis.set(this.#key('failing', target), failure.at);
      await this.#deliver(failureNotification(target, failure));
    } catch (err) {
      this.#o.logger.warn({ target, err: errorMessage(err) }, 'failure notification not sent');
    }
  }

  async backupSucceeded(target: string, success: { id: string; at: string }): Promise<void> {
    try {
      // DEL answers 1 to exactly one caller: the first success after the failures.
      if ((await this.#o.redis.del(this.#key('failing', target))) === 1) await this.#deliver(recoveryNotification(target, success));
    } catch (err) {
      this.#o.logger.warn({ target, err: errorMessage(err) }, 'recovery notification not sent');
    }
  }

  async fleetHeld(target: string, held: { at: string; message: string }): Promise<void> {
    try {
      await this.#deliver(fleetHeldNotification(target, held));
    } catch (err) {
      this.#o.logger.warn({ target, err: errorMessage(err) }, 'fleet-held notification not sent');
    }
  }

  /**
   * Alerts for each target without a good backup for longer than the threshold. A target never
   * backed up counts from when a notifier first saw it, so a new fleet does not alert at once.
   * Returns what was sent.
   */
  async checkStale(targets: readonly string[], now = Date.now()): Promise<Notification[]> {
    const staleMs = this.#o.staleHours * 3600_000;
    const sent: Notification[] = [];
    for (const target of targets) {
      try {
        const s = await this.#state.get(target);
        let since: number;
        if (s.lastSuccess) {
          since = Date.parse(s.lastSuccess.at);
        } else {
          await this.#o.redis.set(this.#key('first-seen', target), String(now), 'NX');
          since = Number(await this.#o.redis.get(this.#key('first-seen', target)));
        }
        if (!(now - since > staleMs)) continue;
        const spell = this.#key('stale', target, s.lastSuccess?.id ?? 'never');
        const ttl = Math.max(24 * 3600, Math.ceil(this.#o.minIntervalSeconds));
        if ((await this.#o.redis.set(spell, String(now), 'EX', ttl, 'NX')) !== 'OK') continue;
        const n = staleNotification(target, s.lastSuccess ? { id: s.lastSuccess.id, at: s.lastSuccess.at } : null, this.#o.staleHours, now);
        if (await this.#deliver(n)) sent.push(n);
        else await this.#o.redis.del(spell);
      } catch (err) {
        this.#o.logger.warn({ target, err: errorMessage(err) }, 'stale check failed');
      }
    }
    return sent;
  }

  /** Runs checkStale every intervalMs until stopped. */
  startStaleChecks(targets: readonly string[], intervalMs: number): { stop(): Promise<void> } {
    let running: Promise<unknown> = Promise.resolve();
    const timer = setInterval(() => {
      running = running.then(() => this.checkStale(targets));
    }, intervalMs);
    timer.unref();
    return {
      stop: async () => {
        clearInterval(timer);
        await running.catch(() => undefined);
      },
    };
  }

  /** Sends unless rate-limited; true when delivered. */
  async #deliver(n: Notification): Promise<boolean> {
    const { minIntervalSeconds, logger } = this.#o;
    const rateKey = this.#key('sent', n.target, n.kind);
    if (minIntervalSeconds > 0 && (await this.#o.redis.set(rateKey, n.at, 'EX', Math.ceil(minIntervalSeconds), 'NX')) !== 'OK') {
      logger.info({ target: n.target, kind: n.kind }, 'notification rate-limited');
      return false;
    }
    try {
      await this.#o.send(n);
      logger.info({ target: n.target, kind: n.kind }, 'notification sent');
      return true;
    } catch (err) {
      // Let the next event try again rather than staying silent for the whole window.
      if (minIntervalSeconds > 0) await this.#o.redis.del(rateKey).catch(() => undefined);
      logger.warn({ target: n.target, kind: n.kind, err: errorMessage(err) }, 'notification not delivered; the backup is not affected');
      return false;
    }
  }
}

/**
 * notify.webhook.url resolved and checked (http or https). Called when the config is loaded by
 * commands that notify, before anything is opened, and again by createNotifier.
 */
export function resolveWebhookUrl(webhook: NonNullable<Config['notify']['webhook']>, env: NodeJS.ProcessEnv = process.env): Secret {
  let url;
  try {
    url = resolveSecret(webhook.url, 'notify.webhook.url', env);
  } catch (err) {
    throw new ConfigError([errorMessage(err)]);
  }
  let parsed: URL | undefined;
  try {
    parsed = new URL(url.reveal());
  } catch {
    parsed = undefined;
  }
  if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    // Not the value: it may be a credential.
    throw new ConfigError([`notify.webhook.url: expected an http:// or https:// URL (from ${url.source})`]);
  }
  return url;
}

/** The notifier the config asks for, or undefined when no webhook is configured. */
export function createNotifier(config: Pick<Config, 'notify' | 'redis'>, redis: Redis, logger: Logger, env: NodeJS.ProcessEnv = process.env): Notifier | undefined {
  const webhook = config.notify.webhook;
  if (!webhook) return undefined;
  const url = resolveWebhookUrl(webhook, env);
  return new Notifier({
    redis,
    prefix: config.redis.prefix,
    send: webhookSender({ url, format: webhook.format, timeoutMs: webhook.timeoutSeconds * 1000 }),
    minIntervalSeconds: webhook.minIntervalSeconds,
    staleHours: config.notify.staleHours,
    logger: logger.child({ component: 'notify' }),
  });
}
