import { Redis } from 'ioredis';

/**
 * Workers block on Redis and must survive reconnects: no per-command retry limit (BullMQ
 * requires `maxRetriesPerRequest: null`). Producers and CLI reads fail fast instead of queueing
 * commands while Redis is away.
 */
export function workerConnection(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, retryStrategy: (n) => Math.min(n * 200, 2000) });
}

export function clientConnection(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: 2, enableOfflineQueue: true, connectTimeout: 5000, retryStrategy: (n) => (n > 5 ? null : n * 200) });
}
