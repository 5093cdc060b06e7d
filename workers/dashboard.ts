import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../src/config/load.ts';
import { errorMessage } from '../src/errors.ts';
import type { Logger } from '../src/log.ts';
import { fleetLeaseFor } from '../src/locks/fleet-lease.ts';
import { FleetState } from '../src/state/fleet-state.ts';
import { authChallenge, isAuthorized, resolveDashboardAuth, type DashboardAuth } from '../src/web/auth.ts';
import { renderFleetFragments, renderFleetPage } from '../src/web/fleet-page.ts';
import { buildFleetView, type FleetView, type QueueDepth } from '../src/web/fleet-view.ts';
import { metricsContentType, renderMetrics } from '../src/web/metrics.ts';
import { schedulerNextRuns } from './producer.ts';
import { backupQueueName, queueOptions, triggerQueueName } from './queues.ts';

export interface DashboardOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Default 127.0.0.1: the fleet page is open unless dashboard.token or basicAuth is set. */
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  readonly env?: NodeJS.ProcessEnv;
}

export interface RunningDashboard {
  readonly url: string;
  readonly server: Server;
  close(): Promise<void>;
}

const queuesPath = '/queues';

/**
 * The dashboard's HTTP server: the fleet page and /api/fleet, /metrics, /healthz, and bull-board
 * under /queues (which can retry a failed job). Everything but /healthz goes through the
 * configured auth. Reads only: the fleet state, the lease table and the queues in Redis.
 */
export async function startDashboard(options: DashboardOptions): Promise<RunningDashboard> {
  const { config, logger } = options;
  const auth = resolveDashboardAuth(config, options.env);
  // Reconnects forever (a long-running server) but fails commands fast while Redis is away, so
  // /healthz answers 503 instead of hanging.
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 3000, retryStrategy: (n) => Math.min(n * 200, 2000) });
  redis.on('error', (err) => logger.debug({ err: err.message }, 'dashboard redis connection error'));
  // bull-board and BullMQ queues need a connection that waits for Redis rather than failing.
  const queueRedis = new Redis(config.redis.url, { maxRetriesPerRequest: null, retryStrategy: (n) => Math.min(n * 200, 2000) });
  queueRedis.on('error', (err) => logger.debug({ err: err.message }, 'dashboard queue connection error'));
  const [backupQueue, triggerQueue] = [backupQueueName, triggerQueueName].map((name) => {
    const q = new Queue(name, queueOptions(config, queueRedis));
    q.on('error', (err) => logger.debug({ err: err.message, queue: name }, 'dashboard queue error'));
    return q;
  }) as [Queue, Queue];
  const queues = [backupQueue, triggerQueue];
  const state = new FleetState(redis, config.redis.prefix);
  const lease = fleetLeaseFor(config, redis, { logger });

  const boardAdapter = new ExpressAdapter();
  boardAdapter.setBasePath(queuesPath);
  createBullBoard({ queues: queues.map((q) => new BullMQAdapter(q)), serverAdapter: boardAdapter, options: { uiConfig: { boardTitle: 'vcsa-backup queues' } } });
  const board = boardAdapter.getRouter() as (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

  // Commands fail fast while disconnected, so give a (re)connect in progress a moment first.
  const whenReady = async (): Promise<void> => {
    if (redis.status !== 'ready') await once(redis, 'ready', { signal: AbortSignal.timeout(2000) });
  };

  const readFleetView = async (): Promise<FleetView> => {
    await whenReady();
    const [states, holders, next, depths] = await Promise.all([
      state.all(config.targets.map((t) => t.name)),
      lease.holders(),
      schedulerNextRuns(triggerQueue).catch(() => new Map<string, number>()),
      Promise.all(
        queues.map(async (q): Promise<QueueDepth> => {
          const c = await q.getJobCounts('waiting', 'active', 'delayed', 'failed');
          return { queue: q.name, waiting: c['waiting'] ?? 0, active: c['active'] ?? 0, delayed: c['delayed'] ?? 0, failed: c['failed'] ?? 0 };
        }),
      ),
    ]);
    return buildFleetView({ states, holders, nextRuns: next, queues: depths, staleHours: config.dashboard.staleHours, now: Date.now() });
  };
  // Every open page polls /api/fleet and Prometheus scrapes /metrics: requests that arrive while
  // a read of Redis is under way share it rather than each starting their own.
  let reading: Promise<FleetView> | undefined;
  const fleetView = (): Promise<FleetView> =>
    (reading ??= readFleetView().finally(() => {
      reading = undefined;
    }));

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    const path = url.pathname;
    if (path === '/healthz') {
      const ping = whenReady().then(() => redis.ping());
      const ok = await Promise.race([ping.then(() => true, () => false), new Promise<boolean>((r) => setTimeout(() => r(false), 3000).unref())]);
      send(res, ok ? 200 : 503, 'text/plain; charset=utf-8', ok ? 'ok\n' : 'redis unreachable\n');
      return;
    }
    if (!isAuthorized(req.headers.authorization, auth)) {
      res.setHeader('www-authenticate', authChallenge(auth));
      send(res, 401, 'text/plain; charset=utf-8', 'authentication required: a bearer token or basic auth (dashboard.token / dashboard.basicAuth in the config)\n');
      return;
    }
    if (path === queuesPath || path.startsWith(`${queuesPath}/`)) {
      // Mounted like express's app.use('/queues', board): the sub-app sees paths below it.
      req.url = (req.url ?? '').slice(queuesPath.length) || '/';
      board(req, res, (err) => {
        if (err !== undefined) logger.warn({ err: errorMessage(err) }, 'bull-board request failed');
        if (!res.headersSent) send(res, err === undefined ? 404 : 500, 'text/plain; charset=utf-8', err === undefined ? 'not found\n' : 'internal error\n');
      });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
      return;
    }
    if (path === '/') {
      const nonce = randomBytes(16).toString('base64');
      res.setHeader('content-security-policy', `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'`);
      send(res, 200, 'text/html; charset=utf-8', renderFleetPage(await fleetView(), { nonce, refreshMs: 2000 }));
    } else if (path === '/api/fleet') {
      const view = await fleetView();
      send(res, 200, 'application/json; charset=utf-8', JSON.stringify({ ...view, html: renderFleetFragments(view) }));
    } else if (path === '/metrics') {
      send(res, 200, metricsContentType, renderMetrics(await fleetView()));
    } else {
      send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.warn({ err: errorMessage(err), path: req.url }, 'dashboard request failed');
      if (!res.headersSent) send(res, 503, 'text/plain; charset=utf-8', `unavailable: ${errorMessage(err)}\n`);
      else res.end();
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}/`;
  logger.info({ url, auth: describeAuth(auth) }, 'dashboard listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    server,
    close: () => {
      closing ??= (async () => {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.allSettled(queues.map((q) => q.close()));
        redis.disconnect();
        queueRedis.disconnect();
      })();
      return closing;
    },
  };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function describeAuth(auth: DashboardAuth): string {
  const kinds = [auth.token ? 'bearer token' : '', auth.basic ? 'basic auth' : ''].filter(Boolean);
  return kinds.length > 0 ? kinds.join(' or ') : 'none (bound address only)';
}
