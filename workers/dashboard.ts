import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Job, Queue } from 'bullmq';
import { connectRedis, redisOptions } from '../src/redis/connection.ts';
import type { Config } from '../src/config/load.ts';
import { ConfigError, errorMessage } from '../src/errors.ts';
import type { Logger } from '../src/log.ts';
import { fleetLeaseFor } from '../src/locks/fleet-lease.ts';
import { FleetState } from '../src/state/fleet-state.ts';
import { authChallenge, authRequired, isAuthorized, resolveDashboardAuth, type DashboardAuth } from '../src/web/auth.ts';
import { checkBindAddress, checkRequest, createRequestGuard, type RequestGuard } from '../src/web/request-guard.ts';
import { renderFleetFragments, renderFleetPage } from '../src/web/fleet-page.ts';
import { buildFleetView, type FleetView, type QueueDepth } from '../src/web/fleet-view.ts';
import { RunHistory } from '../src/state/run-history.ts';
import type { SizedBackup } from '../src/state/size-drop.ts';
import { DashboardMetrics, type QueueStats } from '../src/web/metrics.ts';
import { listBackups } from '../src/catalog/catalog.ts';
import { verifyBackup } from '../src/restore/verify.ts';
import { sizeDrops } from '../src/state/size-drop.ts';
import { createS3ObjectStore } from '../src/storage/s3.ts';
import type { ObjectStore } from '../src/storage/object-store.ts';
import { CsrfGuard } from '../src/web/csrf.ts';
import { applianceScript, layout, renderApplianceBody, renderTimelinePage, type ApplianceBackup, type AppliancePageModel } from '../src/web/pages.ts';
import { chooseWindow, renderTimelineSvg, timelineLegend } from '../src/web/timeline.ts';
import type { BackupJobData } from '../src/fleet/backup-job.ts';
import { enqueueBackups, schedulerNextRuns } from './producer.ts';
import { decodeFailure } from './job-failure.ts';
import { backupQueueName, queueOptions, triggerQueueName } from './queues.ts';

export interface DashboardOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Default 127.0.0.1: the fleet page is open unless dashboard.token or basicAuth is set. */
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  readonly env?: NodeJS.ProcessEnv;
  /** Bind beyond loopback without auth (something in front authenticates). Writes stay refused. */
  readonly insecureNoAuth?: boolean;
  /** Host names (besides the bound address) the Host header may carry, e.g. behind a proxy. */
  readonly publicNames?: readonly string[];
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
  const host = options.host ?? '127.0.0.1';
  // Before anything is opened: a bad --host, or an open dashboard on the network, is exit 2.
  checkBindAddress(host, authRequired(auth), options.insecureNoAuth === true);
  // Redis settings that cannot work (an unreadable TLS file) throw here, before the port is taken.
  redisOptions(config.redis, 'probe');
  // The port next, before any connection: a port in use or an address not on this machine is
  // exit 2 with nothing open (a Redis connection opened first kept the process alive after the
  // error). Requests wait for `ready.route`, set once everything below exists.
  const ready: { route?: (req: IncomingMessage, res: ServerResponse) => Promise<void> } = {};
  const server = createServer((req, res) => {
    const route = ready.route;
    if (!route) {
      send(res, 503, 'text/plain; charset=utf-8', 'starting\n');
      return;
    }
    route(req, res).catch((err: unknown) => {
      logger.warn({ err: errorMessage(err), path: req.url }, 'dashboard request failed');
      if (!res.headersSent) send(res, 503, 'text/plain; charset=utf-8', `unavailable: ${errorMessage(err)}\n`);
      else res.end();
    });
  });
  await listen(server, host, options.port ?? 8080);
  // Set once the port is known (0 picks one): the Host check needs it.
  const bound: { guard?: RequestGuard } = {};
  // Reconnects forever (a long-running server) but fails commands fast while Redis is away, so
  // /healthz answers 503 instead of hanging.
  const redis = connectRedis(config.redis, 'probe', { onError: (err) => logger.debug({ err: err.message }, 'dashboard redis connection error') });
  // bull-board and BullMQ queues need a connection that waits for Redis rather than failing.
  const queueRedis = connectRedis(config.redis, 'service', { onError: (err) => logger.debug({ err: err.message }, 'dashboard queue connection error') });
  const [backupQueue, triggerQueue] = [backupQueueName, triggerQueueName].map((name) => {
    const q = new Queue(name, queueOptions(config, queueRedis));
    q.on('error', (err) => logger.debug({ err: err.message, queue: name }, 'dashboard queue error'));
    return q;
  }) as [Queue, Queue];
  const queues = [backupQueue, triggerQueue];
  const state = new FleetState(redis, config.redis.prefix);
  const runs = new RunHistory(redis, config.redis.prefix);
  const metrics = new DashboardMetrics();
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

  const targetNames = config.targets.map((t) => t.name);
  const readMetrics = async (): Promise<string> => {
    const view = await fleetView();
    const [queueStats, sizes, endedRuns] = await Promise.all([
      Promise.all(queues.map(async (q): Promise<QueueStats> => ({ queue: q.name, counts: await q.getJobCounts(), workers: await q.getWorkersCount() }))),
      Promise.all(targetNames.map(async (t): Promise<[string, SizedBackup[]]> => [t, await state.recentSuccesses(t, 2)])),
      runs.endedSince(metrics.observedSince()),
    ]);
    metrics.update({ view, queues: queueStats, sizes: new Map(sizes), sizeDropRatio: config.retention.minSizeRatio, endedRuns });
    return metrics.render();
  };
  // One scrape at a time: each one updates the shared registry, then renders it.
  let scraping: Promise<unknown> = Promise.resolve();
  const scrape = (): Promise<string> => {
    const next = scraping.catch(() => undefined).then(readMetrics);
    scraping = next;
    return next;
  };

  const csrf = new CsrfGuard();
  const readOnly = config.dashboard.readOnly;
  // S3 for the per-appliance history (the manifests): made on first use. A listing is reused
  // while the appliance's committed-backup count in Redis is unchanged and it is under a minute
  // old (a prune or another tool's writes show up within that minute); verifications are read
  // fresh every time, so a drill's result appears on the next load.
  let store: ObjectStore | undefined;
  const objectStore = (): ObjectStore => (store ??= createS3ObjectStore(config.s3, logger));
  const listings = new Map<string, { at: number; stamp: string; entries: ReturnType<typeof listBackups> }>();
  const listingOf = async (target: string): ReturnType<typeof listBackups> => {
    const current = await state.get(target);
    const stamp = `${current.successes}:${current.lastSuccess?.id ?? ''}`;
    const cached = listings.get(target);
    if (cached && cached.stamp === stamp && Date.now() - cached.at < 60_000) return cached.entries;
    const entries = listBackups(objectStore(), config.s3.prefix, target, { logger });
    listings.set(target, { at: Date.now(), stamp, entries });
    entries.catch(() => listings.delete(target));
    return entries;
  };
  const backupsOf = async (target: string): Promise<ApplianceBackup[]> => {
    const [entries, verifies] = await Promise.all([listingOf(target), state.verifications(target)]);
    const drops = sizeDrops(entries.map((e) => ({ id: e.id, at: e.at.toISOString(), bytes: e.bytes, rawBytes: 0 })), config.retention.minSizeRatio);
    return entries.map((e): ApplianceBackup => ({
      id: e.id,
      at: e.at.getTime(),
      completedAt: Date.parse(e.manifest.completedAt),
      bytes: e.bytes,
      rawBytes: e.manifest.artifacts.reduce((sum, a) => sum + a.rawBytes, 0),
      quiesceMs: e.manifest.quiesce?.ms ?? null,
      durationMs: Date.parse(e.manifest.completedAt) - Date.parse(e.manifest.createdAt),
      encrypted: e.manifest.artifacts.some((a) => a.encryption !== null && a.encryption !== undefined),
      verify: verifies.get(e.id) ?? null,
      sizeDrop: drops.get(e.id) ?? null,
    }));
  };
  // Verifications started from the page run here, one per appliance at a time.
  const verifyTasks = new Map<string, { target: string; state: 'running' | 'ok' | 'failed'; message: string }>();
  let verifySeq = 0;

  const page = (res: ServerResponse, build: (nonce: string) => string): void => {
    const nonce = randomBytes(16).toString('base64');
    res.setHeader('content-security-policy', `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'`);
    send(res, 200, 'text/html; charset=utf-8', build(nonce));
  };
  const sendJson = (res: ServerResponse, status: number, body: unknown): void => send(res, status, 'application/json; charset=utf-8', JSON.stringify(body));

  const timeline = async (url: URL): Promise<{ svg: string; label: string; live: boolean; peak: number } | { error: string }> => {
    await whenReady();
    const now = Date.now();
    const q = { night: url.searchParams.get('night'), from: url.searchParams.get('from'), to: url.searchParams.get('to') };
    const live = !q.night && !q.from && !q.to;
    // The last run is found among the newest runs; a chosen night reads its own window.
    const recent = live ? await runs.latest(Math.max(50, targetNames.length * 10)) : [];
    const window = chooseWindow(recent, q, now);
    if ('error' in window) return window;
    const shown = live ? recent : await runs.startedBetween(window.from - 24 * 3600_000, window.to);
    const svg = renderTimelineSvg(shown, window, { targets: targetNames, maxConcurrent: config.quiesce.maxConcurrent, now });
    const peak = Number(/data-peak="(\d+)"/.exec(svg)?.[1] ?? 0);
    return { svg, label: window.label, live, peak };
  };

  const readBody = async (req: IncomingMessage): Promise<Record<string, unknown>> => {
    let body = '';
    for await (const chunk of req) {
      body += String(chunk);
      if (body.length > 4096) throw new Error('request body too large');
    }
    const value = JSON.parse(body || '{}') as unknown;
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  };

  const act = async (action: string, req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (readOnly) return sendJson(res, 403, { error: 'the dashboard is read-only (dashboard.readOnly: true)' });
    const refused = csrf.check(req);
    if (refused) return sendJson(res, 403, { error: refused });
    let body: Record<string, unknown>;
    try {
      body = await readBody(req);
    } catch (err) {
      return sendJson(res, 400, { error: `body: ${errorMessage(err)}` });
    }
    const target = typeof body['target'] === 'string' ? body['target'] : undefined;
    if (action === 'backup' || action === 'verify') {
      if (!target || !targetNames.includes(target)) return sendJson(res, 400, { error: `target: expected one of ${targetNames.join(', ')}` });
    }
    if (action === 'backup') {
      // The same path as `vcsa-backup run`: one job per appliance at a time (deduplicated).
      const [job] = await enqueueBackups(config, queueRedis, [target!], `d${Date.now()}`);
      logger.info({ target, jobId: job?.jobId, alreadyQueued: job?.alreadyQueued }, 'backup requested from the dashboard');
      return sendJson(res, 202, { jobId: job?.jobId, alreadyQueued: job?.alreadyQueued ?? false });
    }
    if (action === 'verify') {
      const running = [...verifyTasks.entries()].find(([, t]) => t.target === target && t.state === 'running');
      if (running) return sendJson(res, 202, { taskId: running[0], alreadyRunning: true });
      const taskId = `verify.${target}.${Date.now()}.${++verifySeq}`;
      const task: { target: string; state: 'running' | 'ok' | 'failed'; message: string } = { target: target!, state: 'running', message: 'starting' };
      verifyTasks.set(taskId, task);
      logger.info({ target, taskId }, 'verify requested from the dashboard');
      void verifyBackup({ config, target: target!, backup: 'latest', store: objectStore(), logger: logger.child({ target, taskId }), redis, onProgress: (e) => (task.message = `${e.step}${e.artifact ? ` ${e.artifact}` : ''}`) })
        .then((report) => {
          task.state = report.ok ? 'ok' : 'failed';
          task.message = `${report.id}: ${report.message}`;
        })
        .catch((err: unknown) => {
          task.state = 'failed';
          task.message = errorMessage(err);
        });
      return sendJson(res, 202, { taskId });
    }
    if (action === 'retry') {
      const jobId = typeof body['jobId'] === 'string' ? body['jobId'] : '';
      const job = jobId ? await Job.fromId<BackupJobData>(backupQueue, jobId) : undefined;
      if (!job) return sendJson(res, 404, { error: `jobId: no job ${jobId} in the backup queue` });
      if ((await job.getState()) !== 'failed') return sendJson(res, 409, { error: `job ${jobId} has not failed; nothing to retry` });
      const holder = await backupQueue.getDeduplicationJobId(`target.${job.data.target}`);
      if (holder && holder !== jobId) return sendJson(res, 409, { error: `a backup of ${job.data.target} is already queued or running (${holder})` });
      await job.retry('failed');
      logger.info({ target: job.data.target, jobId }, 'failed job retried from the dashboard');
      return sendJson(res, 202, { jobId });
    }
    return sendJson(res, 404, { error: `no action ${action}` });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    const path = url.pathname;
    if (path === '/healthz') {
      const ping = whenReady().then(() => redis.ping());
      const ok = await Promise.race([ping.then(() => true, () => false), new Promise<boolean>((r) => setTimeout(() => r(false), 3000).unref())]);
      send(res, ok ? 200 : 503, 'text/plain; charset=utf-8', ok ? 'ok\n' : 'redis unreachable\n');
      return;
    }
    const verdict = bound.guard ? checkRequest(bound.guard, { method: req.method, host: req.headers.host, origin: req.headers.origin, referer: req.headers.referer, path }) : { ok: false as const, status: 503, reason: 'starting' };
    // A foreign Host (DNS rebinding) is refused before anything else; then authentication, so an
    // unauthenticated caller learns only that it must authenticate; then the same-origin rule.
    if (!verdict.ok && verdict.status !== 403) {
      send(res, verdict.status, 'text/plain; charset=utf-8', `${verdict.reason}\n`);
      return;
    }
    if (!isAuthorized(req.headers.authorization, auth)) {
      res.setHeader('www-authenticate', authChallenge(auth));
      send(res, 401, 'text/plain; charset=utf-8', 'authentication required: a bearer token or basic auth (dashboard.token / dashboard.basicAuth in the config)\n');
      return;
    }
    if (!verdict.ok) {
      send(res, verdict.status, 'text/plain; charset=utf-8', `${verdict.reason}\n`);
      return;
    }
    if (req.method === 'POST' && /^\/queues\/api\/queues\/[^/]+\/add$/.test(path)) {
      // bull-board's "add job" would bypass the per-target deduplication of `run`: refused.
      send(res, 403, 'text/plain; charset=utf-8', 'adding jobs here bypasses the per-target deduplication; use `vcsa-backup run --target NAME`\n');
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
    if (path.startsWith('/actions/')) {
      if (req.method !== 'POST') {
        send(res, 405, 'text/plain; charset=utf-8', 'method not allowed: POST\n');
        return;
      }
      await act(path.slice('/actions/'.length), req, res);
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
    } else if (path === '/timeline' || path === '/timeline.svg') {
      const t = await timeline(url);
      if ('error' in t) {
        send(res, 400, 'text/plain; charset=utf-8', `${t.error}\n`);
      } else if (path === '/timeline.svg') {
        send(res, 200, 'image/svg+xml; charset=utf-8', t.svg);
      } else {
        const night = url.searchParams.get('night') ?? new Date(Date.now() - 12 * 3600_000).toISOString().slice(0, 10);
        page(res, (nonce) => renderTimelinePage({ svg: t.svg, legend: timelineLegend(), label: t.label, night, root: '', targets: targetNames, nonce, svgUrl: `timeline.svg${url.search}`, live: t.live, peak: t.peak, maxConcurrent: config.quiesce.maxConcurrent }));
      }
    } else if (path.startsWith('/appliance/')) {
      const target = decodeURIComponent(path.slice('/appliance/'.length));
      if (!targetNames.includes(target)) {
        send(res, 404, 'text/plain; charset=utf-8', `no appliance ${target} in this fleet\n`);
        return;
      }
      const [view, listed, failed] = await Promise.all([
        fleetView(),
        backupsOf(target).then((b) => ({ backups: b, error: null }), (err: unknown) => ({ backups: [] as ApplianceBackup[], error: errorMessage(err) })),
        readOnly ? Promise.resolve([]) : backupQueue.getFailed(0, 200),
      ]);
      const model: AppliancePageModel = {
        target,
        configPath: config.source,
        row: view.targets.find((t) => t.name === target) ?? null,
        backups: listed.backups,
        listError: listed.error,
        failedJobs: failed
          .filter((j) => (j.data as Partial<BackupJobData>).target === target)
          .slice(0, 3)
          .map((j) => ({ id: j.id ?? '', at: new Date(j.finishedOn ?? j.timestamp).toISOString(), reason: decodeFailure(j.failedReason).message })),
        readOnly,
        sizeDropRatio: config.retention.minSizeRatio,
      };
      page(res, (nonce) => layout({ title: `vcsa-backup: ${target}`, root: '../', targets: targetNames, body: renderApplianceBody(model), nonce, ...(readOnly ? {} : { script: applianceScript(target), csrf: csrf.token() }) }));
    } else if (path === '/api/job') {
      const id = url.searchParams.get('id') ?? '';
      const job = id ? await Job.fromId<BackupJobData>(backupQueue, id) : undefined;
      if (!job) {
        sendJson(res, 404, { error: `no job ${id}` });
        return;
      }
      const jobState = await backupQueue.getJobState(id);
      const failure = jobState === 'failed' ? decodeFailure(job.failedReason) : null;
      sendJson(res, 200, { id, target: job.data.target, state: jobState, progress: job.progress, message: failure ? `${failure.code}: ${failure.message}` : jobState === 'completed' ? `backup ${String((job.returnvalue as { id?: string } | null)?.id ?? '')}` : '' });
    } else if (path === '/api/verify-task') {
      const task = verifyTasks.get(url.searchParams.get('id') ?? '');
      if (!task) sendJson(res, 404, { error: 'no such verification (the dashboard may have restarted)' });
      else sendJson(res, 200, task);
    } else if (path === '/api/fleet') {
      const view = await fleetView();
      send(res, 200, 'application/json; charset=utf-8', JSON.stringify({ ...view, html: renderFleetFragments(view) }));
    } else if (path === '/metrics') {
      send(res, 200, metrics.contentType, await scrape());
    } else {
      send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    }
  };

  ready.route = handle;
  const address = server.address() as AddressInfo;
  bound.guard = createRequestGuard(host, address.port, authRequired(auth), options.publicNames ?? []);
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
        store?.close();
        redis.disconnect();
        queueRedis.disconnect();
      })();
      return closing;
    },
  };
}

/** Binds the server; what the operator can fix (port in use, an address not here, a privileged port) is a ConfigError naming the option. */
async function listen(server: Server, host: string, port: number): Promise<void> {
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new ConfigError([`--port: ${host}:${port} is already in use; choose another port (--port 0 picks a free one)`]);
    if (code === 'EACCES') throw new ConfigError([`--port: ${port} needs privileges to bind; use a port above 1023`]);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      throw new ConfigError([`--host: ${host} is not an address of this machine (${code}); e.g. --host 127.0.0.1`]);
    }
    throw err;
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function describeAuth(auth: DashboardAuth): string {
  const kinds = [auth.token ? 'bearer token' : '', auth.basic ? 'basic auth' : ''].filter(Boolean);
  return kinds.length > 0 ? kinds.join(' or ') : 'none (bound address only)';
}
