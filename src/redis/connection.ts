import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Redis, type RedisOptions } from 'ioredis';
import type { RedisConfig } from '../config/load.ts';
import { BackupError, ConfigError, errorMessage } from '../errors.ts';
import { hasCode } from '../error-codes.ts';
import { throwIfAborted } from '../abort.ts';
import { timings } from '../defaults.ts';

/**
 * The one place that turns `redis:` settings into a connection: URL, ACL user and password,
 * TLS (rediss:// or redis.tls, private CA, client certificate), Redis Sentinel, and how each kind
 * of user of Redis lives through a lost connection. Every connection of the product (BullMQ
 * queues and workers, the fleet lease and watchdog, the state, CLI commands, the dashboard) is
 * made here.
 */
export type RedisSettings = Pick<RedisConfig, 'url' | 'sentinels' | 'name' | 'username' | 'password' | 'sentinelUsername' | 'sentinelPassword' | 'tls' | 'unreachableSeconds'>;

/**
 * - `service`: long-running, blocks on Redis (BullMQ workers, lease renewal, watchdog, the dashboard's queues); commands wait while
 *   Redis is away and the connection is re-made forever (BullMQ needs `maxRetriesPerRequest: null`).
 * - `command`: a CLI command (run --wait, status, restore, verify…): commands wait for a reconnect for up to
 *   `unreachableSeconds`, then fail and the connection ends (then {@link asRedisUnreachable}).
 * - `probe`: the dashboard's page and /healthz reads: fail at once while Redis is away (503, not a
 *   hang), reconnect forever.
 */
export type RedisRole = 'service' | 'command' | 'probe';

/** Attempts (about 5 s) before a command that never reached Redis gives up: a wrong url is the likely cause. */
const firstConnectAttempts = 8;

function readPem(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError([`redis.tls.${field}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}); check the path and its permissions`]);
  }
}

function tlsOptions(settings: RedisSettings, url: URL): ConnectionOptions | undefined {
  if (url.protocol !== 'rediss:' && settings.tls === undefined) return undefined;
  const t = settings.tls ?? {};
  return {
    ...(t.ca ? { ca: readPem(t.ca, 'ca') } : {}),
    ...(t.cert ? { cert: readPem(t.cert, 'cert') } : {}),
    ...(t.key ? { key: readPem(t.key, 'key') } : {}),
    ...(t.servername ? { servername: t.servername } : {}),
  };
}

function parseUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError([`redis.url: not a URL; expected redis://[user:password@]host:port[/db] or rediss://… (REDIS_URL wins when set)`]);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError([`redis.url: scheme ${url.protocol} is not redis: or rediss:`]);
  }
  return url;
}

/** ioredis options for these settings and role. Options are built, never parsed from a URL by ioredis, so the config's password wins over the URL's. */
export function redisOptions(settings: RedisSettings, role: RedisRole): RedisOptions {
  const url = parseUrl(settings.url);
  const db = Number(url.pathname.replace(/^\//, '') || '0');
  const username = settings.username?.reveal() ?? (url.username ? decodeURIComponent(url.username) : undefined);
  const password = settings.password?.reveal() ?? (url.password ? decodeURIComponent(url.password) : undefined);
  const tls = tlsOptions(settings, url);
  const base: RedisOptions = {
    host: url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: url.port ? Number(url.port) : 6379,
    db: Number.isInteger(db) ? db : 0,
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    ...(tls ? { tls } : {}),
    connectTimeout: 5000,
    // After a Sentinel failover the old primary, now a replica, refuses writes until the
    // connection is re-made to the new one: reconnect and resend instead of failing the command.
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
  };
  if (settings.sentinels) {
    Object.assign(base, {
      sentinels: settings.sentinels.map((s) => ({ host: s.host, port: s.port })),
      name: settings.name,
      role: 'master',
      // No failoverDetector: it disconnects the connector on +switch-master, and when that lands
      // while a reconnect is asking the sentinels (the old primary just died), ioredis ends the
      // connection for good ("Connection is closed.", status end): a worker would never reconnect.
      // Without it a failover is still followed at once: the dead primary's socket closes, and a
      // demoted one answers READONLY (reconnectOnError) after the sentinels' CLIENT KILL.
      sentinelRetryStrategy: (n: number) => Math.min(n * 200, 2000),
      ...(settings.sentinelUsername ? { sentinelUsername: settings.sentinelUsername.reveal() } : {}),
      ...(settings.sentinelPassword ? { sentinelPassword: settings.sentinelPassword.reveal() } : {}),
      ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
    } satisfies RedisOptions);
  }
  return { ...base, ...roleOptions(settings, role) };
}

function roleOptions(settings: RedisSettings, role: RedisRole): RedisOptions {
  switch (role) {
    case 'service':
      return { maxRetriesPerRequest: null, enableReadyCheck: true, retryStrategy: (n) => Math.min(n * 200, 2000) };
    case 'probe':
      return { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 3000, retryStrategy: (n) => Math.min(n * 200, 2000) };
    case 'command':
      // Stateful per connection: a fresh closure for each (duplicates get their own, see below).
      return followerRetry(settings.unreachableSeconds * 1000);
  }
}

/**
 * Commands queue while Redis is away; reconnect every second at most; give up (the connection
 * ends, queued commands fail) once Redis has been gone for `boundMs`, or, for a connection that
 * never reached Redis, after a few attempts.
 */
function followerRetry(boundMs: number): RedisOptions {
  const state = { everReady: false, downSince: undefined as number | undefined };
  return {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy: (n: number) => {
      const now = Date.now();
      state.downSince ??= now;
      if (!state.everReady && n > firstConnectAttempts) return null;
      if (state.everReady && now - state.downSince > boundMs) return null;
      return Math.min(n * 200, 1000);
    },
    // Not an ioredis option: read back by connectRedis to learn when the connection is ready.
    followerState: state,
  } as RedisOptions;
}

/** A connection in the given role. Errors are logged by the caller's `onError` (or dropped): an unhandled 'error' event would crash the process. */
export function connectRedis(settings: RedisSettings, role: RedisRole, options: { lazyConnect?: boolean; onError?: (err: Error) => void } = {}): Redis {
  const opts = redisOptions(settings, role);
  if (options.lazyConnect) opts.lazyConnect = true;
  // ioredis's constructor types its replyMapping more narrowly than RedisOptions does; we set none.
  const { replyMapping: _none, ...ioredisOptions } = opts;
  const redis = new Redis(ioredisOptions);
  const state = (opts as { followerState?: { everReady: boolean; downSince: number | undefined } }).followerState;
  if (state) {
    redis.on('ready', () => {
      state.everReady = true;
      state.downSince = undefined;
    });
  }
  redis.on('error', options.onError ?? (() => undefined));
  return redis;
}

/** A second connection with the same settings and role (BullMQ's blocking reads need their own). */
export function duplicateConnection(settings: RedisSettings, role: RedisRole, onError?: (err: Error) => void): Redis {
  return connectRedis(settings, role, onError ? { onError } : {});
}

/** Where Redis is, for messages: the URL without its password, or the sentinels and group. */
export function describeRedis(settings: Pick<RedisSettings, 'url' | 'sentinels' | 'name'>): string {
  if (settings.sentinels) return `Sentinel group ${settings.name ?? '?'} via ${settings.sentinels.map((s) => `${s.host}:${s.port}`).join(', ')}`;
  return redactRedisUrl(settings.url);
}

/** The URL without its password, for messages. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '****';
    return u.toString();
  } catch {
    return '(unparsable redis.url)';
  }
}

/** Node's codes for a server certificate that the configured CA (or the system's) does not vouch for. */
const certificateCodes = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
]);

/**
 * A connection that reached Redis and was refused: its certificate is not trusted, or the user
 * or password is wrong. Retrying cannot help, so these name the settings to fix instead of
 * saying "unreachable". Null for anything else.
 */
export function redisRefusal(settings: RedisSettings, cause: unknown): BackupError | null {
  const code = (cause as { code?: unknown } | null)?.code;
  const message = errorMessage(cause);
  const where = describeRedis(settings);
  if (typeof code === 'string' && certificateCodes.has(code)) {
    return new BackupError(
      'REDIS_TLS_FAILED',
      `Redis at ${where} presented a TLS certificate that is not trusted (${code}: ${message}); set redis.tls.ca to the PEM file of the CA that signed the server's certificate${settings.tls?.ca ? ` (now ${settings.tls.ca})` : ''}`,
      { permanent: true, cause },
    );
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new BackupError('REDIS_TLS_FAILED', `Redis at ${where}: ${message}; connect by a name the certificate carries, or set redis.tls.servername to it`, { permanent: true, cause });
  }
  if (/^(WRONGPASS|NOAUTH)\b|invalid password|invalid username-password/i.test(message)) {
    return new BackupError(
      'REDIS_AUTH_FAILED',
      `Redis at ${where} refused the login (${message.split('.')[0]}); check redis.username and redis.password (or the user and password in redis.url / REDIS_URL) and the ACL user on the server`,
      { permanent: true, cause },
    );
  }
  return null;
}

function unreachable(settings: RedisSettings, cause: unknown, when: string): BackupError {
  const refused = redisRefusal(settings, cause);
  if (refused) return refused;
  return new BackupError(
    'REDIS_UNREACHABLE',
    `cannot reach Redis at ${describeRedis(settings)} ${when} (${errorMessage(cause)}); check redis.url (or REDIS_URL), redis.sentinels, credentials and TLS in the config, and that Redis is running`,
    { cause },
  );
}

/**
 * A command's connection, connected before anything else happens. Redis that does not answer
 * (restarting, failing over, a container still starting) is waited for up to
 * redis.unreachableSeconds, as a command already does when Redis goes away mid-way; after that,
 * one clear error (REDIS_UNREACHABLE, naming where without the password and the settings to
 * fix), not a driver message from the middle of the command. A refused login or an untrusted
 * certificate is reported at once: waiting does not change it.
 */
export async function openRedis(
  settings: RedisSettings,
  role: RedisRole = 'command',
  onError?: (err: Error) => void,
  signal?: AbortSignal,
  /** Told once, when the first attempt fails and the command starts waiting. */
  onWaiting?: (message: string) => void,
): Promise<Redis> {
  const deadline = Date.now() + settings.unreachableSeconds * 1000;
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(signal, 'connecting to Redis');
    let last: unknown;
    const redis = connectRedis(settings, role, {
      lazyConnect: true,
      onError: (err) => {
        last = err;
        onError?.(err);
      },
    });
    // SIGTERM while Redis does not answer: stop trying now, not after the last attempt.
    const stop = (): void => redis.disconnect();
    signal?.addEventListener('abort', stop, { once: true });
    try {
      await redis.connect();
      await redis.ping();
      return redis;
    } catch (err) {
      redis.disconnect();
      throwIfAborted(signal, 'connecting to Redis');
      const cause = last ?? err;
      if (redisRefusal(settings, cause) || Date.now() >= deadline) {
        throw unreachable(settings, cause, attempt === 1 ? 'at start' : `at start, for redis.unreachableSeconds (${settings.unreachableSeconds} s)`);
      }
      if (attempt === 1) onWaiting?.(`Redis at ${describeRedis(settings)} does not answer (${errorMessage(cause)}); waiting for it up to redis.unreachableSeconds (${settings.unreachableSeconds} s)`);
      await abortableDelay(Math.min(timings.redisStartRetryMs, Math.max(0, deadline - Date.now())), signal);
    } finally {
      signal?.removeEventListener('abort', stop);
    }
  }
}

function abortableDelay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * The error to report for `err`, thrown while using `redis`: once the connection gave up (Redis
 * gone for longer than redis.unreachableSeconds), whatever the driver said becomes
 * REDIS_UNREACHABLE; anything else is returned as it is.
 */
export function asRedisUnreachable(err: unknown, redis: Redis, settings: RedisSettings): unknown {
  if (hasCode(err, 'ABORTED')) return err;
  if (redis.status === 'end' || (err instanceof Error && /Connection is closed|max retries per request/i.test(err.message))) {
    return unreachable(settings, err, `for more than redis.unreachableSeconds (${settings.unreachableSeconds} s)`);
  }
  return err;
}

/** Runs `fn` with a command's connection, then closes it; a lost Redis is REDIS_UNREACHABLE. */
export async function withRedis<T>(settings: RedisSettings, fn: (redis: Redis) => Promise<T>, onError?: (err: Error) => void): Promise<T> {
  const redis = await openRedis(settings, 'command', onError);
  try {
    return await fn(redis);
  } catch (err) {
    throw asRedisUnreachable(err, redis, settings);
  } finally {
    redis.disconnect();
  }
}
