import { Redis } from 'ioredis';
import { BackupError, errorMessage } from '../src/errors.ts';

/**
 * Workers block on Redis and must survive reconnects: no per-command retry limit (BullMQ
 * requires `maxRetriesPerRequest: null`). Producers and CLI reads fail fast instead of queueing
 * commands while Redis is away.
 */
export function workerConnection(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, retryStrategy: (n) => Math.min(n * 200, 2000) });
}

const clientOptions = { maxRetriesPerRequest: 2, connectTimeout: 5000, retryStrategy: (n: number) => (n > 5 ? null : n * 200) };

export function clientConnection(url: string): Redis {
  return new Redis(url, clientOptions);
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

/**
 * A CLI command's connection, connected before anything else happens: an unreachable Redis is
 * one clear error (REDIS_UNREACHABLE, naming the URL without its password and the setting to
 * fix), not a driver message from the middle of the command.
 */
export async function openClient(url: string): Promise<Redis> {
  const redis = new Redis(url, { ...clientOptions, lazyConnect: true });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.ping();
    return redis;
  } catch (err) {
    redis.disconnect();
    throw new BackupError('REDIS_UNREACHABLE', `cannot reach Redis at ${redactRedisUrl(url)} (${errorMessage(err)}); check redis.url in the config or REDIS_URL, and that Redis is running`, { cause: err });
  }
}
