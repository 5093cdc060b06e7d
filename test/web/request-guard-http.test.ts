/**
 * Issue 9 item 4 without a browser: the real dashboard (startDashboard, real Redis, real BullMQ
 * queues and bull-board) driven with plain HTTP requests, as a hostile page or a rebinding DNS
 * name would send them. node's fetch will not set a Host header, so every request here is made
 * with node:http. A failed job is seeded in the backup queue so that an accepted write would show
 * (the job would move back to waiting); the same write with auth and the same origin does move
 * it, so the refusals are the guard's and not a broken route.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { loadConfig, type Config } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { startDashboard, type RunningDashboard } from '../../workers/dashboard.ts';
import { backupQueueName, queueOptions, removeFleetKeys } from '../../workers/queues.ts';
import { runCliInProcess } from '../support/cli-in-process.ts';
import { freePort } from '../support/fleet.ts';

interface Reply {
  readonly status: number;
  readonly body: string;
}

/** One HTTP request to `base` (a dashboard URL) with exactly these headers, Host included. */
function send(base: string, path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, path: `${url.pathname}${url.search}`, method: options.method ?? 'GET', headers: { host: url.host, ...options.headers }, timeout: 15_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${options.method ?? 'GET'} ${path}: no answer in 15 s`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

const json = { 'content-type': 'application/json' };
const token = `guard-token-${randomBytes(6).toString('hex')}`;
const bearer = { authorization: `Bearer ${token}` };

void describe('dashboard request guard over plain HTTP', { timeout: 90_000 }, () => {
  const prefix = `guard-http-${randomBytes(4).toString('hex')}`;
  let config: Config;
  let dir = '';
  let configPath = '';
  let redis: Redis;
  let queue: Queue;
  let open: RunningDashboard;
  let secured: RunningDashboard;
  let failedJobId = '';

  const counts = async (): Promise<{ failed: number; waiting: number; total: number }> => {
    const c = await queue.getJobCounts('failed', 'waiting', 'active', 'delayed', 'completed', 'prioritized');
    return { failed: c['failed'] ?? 0, waiting: c['waiting'] ?? 0, total: Object.values(c).reduce((a, b) => a + b, 0) };
  };

  before(async () => {
    const redisUrl = process.env['REDIS_URL'] || 'redis://127.0.0.1:6379';
    const raw = {
      redis: { url: redisUrl, prefix },
      s3: { bucket: 'vcsa-backups', endpoint: `http://127.0.0.1:${await freePort()}`, forcePathStyle: true, accessKeyId: 'k', secretAccessKey: 's' },
      targets: [{ name: 'vc01', profile: 'vcsa-5.5', executor: { type: 'local' }, variables: { ROOT: '/nonexistent/vc01' } }],
    };
    dir = await mkdtemp(join(tmpdir(), 'guard-http-'));
    configPath = join(dir, 'fleet.yaml');
    await writeFile(configPath, stringify(raw));
    config = loadConfig(configPath, { env: {} });
    redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
    queue = new Queue(backupQueueName, queueOptions(config, redis));
    // A failed backup job, failed by hand the way a worker fails one.
    await queue.add('backup', { target: 'vc01', runId: 'seed', trigger: 'run' }, { jobId: 'backup.vc01.seed' });
    const workerRedis = redis.duplicate();
    const worker = new Worker(backupQueueName, null, { ...queueOptions(config, workerRedis), autorun: false });
    const job = await worker.getNextJob('seed-token');
    assert.ok(job, 'the seeded job was fetched');
    await job.moveToFailed(new Error('COMMAND_FAILED: seeded'), 'seed-token', false);
    await worker.close();
    workerRedis.disconnect();
    failedJobId = job.id ?? '';
    assert.deepEqual(await counts(), { failed: 1, waiting: 0, total: 1 });

    open = await startDashboard({ config, logger: silentLogger, port: 0 });
    const withToken: Config = { ...config, dashboard: { ...config.dashboard, token: { env: 'GUARD_TOKEN' } } };
    secured = await startDashboard({ config: withToken, logger: silentLogger, port: 0, env: { GUARD_TOKEN: token } });
  });
  after(async () => {
    await open?.close();
    await secured?.close();
    await queue?.close();
    if (redis) await removeFleetKeys(redis, prefix).catch(() => undefined);
    redis?.disconnect();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void test('a foreign Host header is 421 everywhere but /healthz, with or without valid auth', async () => {
    for (const [d, auth] of [[open, {}], [secured, bearer]] as const) {
      const port = new URL(d.url).port;
      for (const host of [`rebound.example:${port}`, 'rebound.example', `127.0.0.2:${port}`, `localhost.example:${port}`]) {
        for (const path of ['/', '/api/fleet', '/metrics', '/queues/api/queues']) {
          const res = await send(d.url, path, { headers: { ...auth, host } });
          assert.equal(res.status, 421, `GET ${path} with Host ${JSON.stringify(host)}: ${res.body}`);
          assert.match(res.body, /not this dashboard's address/);
        }
        const retry = await send(d.url, '/queues/api/queues/backup/retry/failed', { method: 'PUT', headers: { ...auth, host, origin: `http://${host}` } });
        assert.equal(retry.status, 421, `PUT retry with Host ${JSON.stringify(host)}`);
      }
      // The names of the address it is bound to are fine, and /healthz answers whatever the Host.
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`]) {
        assert.equal((await send(d.url, '/api/fleet', { headers: { ...auth, host } })).status, 200, `Host ${host}`);
      }
      assert.equal((await send(d.url, '/healthz', { headers: { host: 'rebound.example' } })).status, 200);
    }
    assert.deepEqual(await counts(), { failed: 1, waiting: 0, total: 1 }, 'nothing changed in the queue');
  });

  void test('without auth configured: reads work, every write is refused (bull-board retry and add, the page actions)', async () => {
    for (const path of ['/', '/api/fleet', '/metrics', '/queues/api/queues', '/queues/', '/timeline', '/appliance/vc01']) {
      const res = await send(open.url, path);
      assert.equal(res.status, 200, `GET ${path}: ${res.body.slice(0, 200)}`);
    }
    const queues = JSON.parse((await send(open.url, '/queues/api/queues')).body) as { queues: { name: string; counts: { failed: number } }[] };
    assert.equal(queues.queues.find((q) => q.name === backupQueueName)?.counts.failed, 1, 'bull-board reads the failed job');

    const sameOrigin = { origin: new URL(open.url).origin };
    const writes: { method: string; path: string; body?: string }[] = [
      { method: 'PUT', path: '/queues/api/queues/backup/retry/failed' },
      { method: 'PUT', path: `/queues/api/queues/backup/${failedJobId}/retry/failed` },
      { method: 'POST', path: '/queues/api/queues/backup/add', body: JSON.stringify({ name: 'backup', data: { target: 'vc01' } }) },
      { method: 'PUT', path: '/queues/api/queues/backup/clean/failed' },
      { method: 'DELETE', path: `/queues/api/queues/backup/${failedJobId}` },
      { method: 'PUT', path: '/queues/api/queues/backup/pause' },
      { method: 'POST', path: '/actions/backup', body: JSON.stringify({ target: 'vc01' }) },
      { method: 'POST', path: '/actions/retry', body: JSON.stringify({ jobId: failedJobId }) },
      { method: 'POST', path: '/actions/verify', body: JSON.stringify({ target: 'vc01' }) },
    ];
    for (const w of writes) {
      for (const headers of [{ ...json, ...sameOrigin }, { ...json }, { ...json, origin: 'http://attacker.example' }]) {
        const res = await send(open.url, w.path, { method: w.method, headers, ...(w.body ? { body: w.body } : {}) });
        assert.equal(res.status, 403, `${w.method} ${w.path} (${JSON.stringify(headers)}): ${res.body}`);
        assert.match(res.body, /read-only|need dashboard\.token/);
      }
    }
    assert.deepEqual(await counts(), { failed: 1, waiting: 0, total: 1 }, 'the failed job is still failed, nothing was added');
    assert.equal(await queue.isPaused(), false);
  });

  void test('with auth: a cross-origin write, or one without Origin/Referer, is 403; the same write from the same origin goes through', async () => {
    const origin = new URL(secured.url).origin;
    const retryAll = '/queues/api/queues/backup/retry/failed';
    const refused: Record<string, string>[] = [
      { ...bearer },
      { ...bearer, origin: 'http://attacker.example' },
      { ...bearer, origin: 'null' },
      { ...bearer, origin: origin.replace('127.0.0.1', 'localhost.attacker.example') },
      { ...bearer, referer: 'http://attacker.example/page' },
      { ...bearer, origin: `${origin.replace(/:\d+$/, '')}:1` },
    ];
    for (const headers of refused) {
      const res = await send(secured.url, retryAll, { method: 'PUT', headers });
      assert.equal(res.status, 403, `PUT ${retryAll} ${JSON.stringify(headers)}: ${res.body}`);
      assert.match(res.body, /same-origin|cross-origin/);
      const act = await send(secured.url, '/actions/backup', { method: 'POST', headers: { ...headers, ...json }, body: JSON.stringify({ target: 'vc01' }) });
      assert.equal(act.status, 403, `POST /actions/backup ${JSON.stringify(headers)}: ${act.body}`);
    }
    // No credentials: 401 before anything else is said (reads too).
    assert.equal((await send(secured.url, retryAll, { method: 'PUT', headers: { origin } })).status, 401);
    assert.equal((await send(secured.url, '/api/fleet')).status, 401);
    // bull-board's add is refused even with auth and the same origin: it would bypass the per-target dedup.
    const add = await send(secured.url, '/queues/api/queues/backup/add', { method: 'POST', headers: { ...bearer, ...json, origin }, body: JSON.stringify({ name: 'backup', data: { target: 'vc01' } }) });
    assert.equal(add.status, 403);
    assert.match(add.body, /deduplication/);
    assert.deepEqual(await counts(), { failed: 1, waiting: 0, total: 1 }, 'nothing changed before the allowed write');

    // A Referer of this origin stands in for Origin.
    const ok = await send(secured.url, retryAll, { method: 'PUT', headers: { ...bearer, referer: `${origin}/queues/` } });
    assert.equal(ok.status, 200, ok.body);
    assert.deepEqual(await counts(), { failed: 0, waiting: 1, total: 1 }, 'the allowed retry moved the job back to waiting');
  });

  void test('--host beyond loopback without auth is refused at start (exit 2) unless --insecure-no-auth; then still read-only', async () => {
    // The CLI: exit 2 before anything is opened (the corpus test runs it as a process too).
    const res = await runCliInProcess(['dashboard', '--host', '0.0.0.0', '--port', '0', '--config', configPath]);
    assert.equal(res.code, 2, res.stderr);
    assert.match(res.stderr, /--host: 0\.0\.0\.0 is reachable beyond this machine/);
    await assert.rejects(startDashboard({ config, logger: silentLogger, host: '0.0.0.0', port: 0 }), (err: unknown) => err instanceof ConfigError && /^--host: 0\.0\.0\.0 is reachable beyond this machine and the dashboard has no auth.*--insecure-no-auth/.test(err.message));
    await assert.rejects(startDashboard({ config, logger: silentLogger, host: '::', port: 0 }), ConfigError);

    const insecure = await startDashboard({ config, logger: silentLogger, host: '0.0.0.0', port: 0, insecureNoAuth: true, publicNames: ['backups.example'] });
    try {
      const port = new URL(insecure.url).port;
      const local = `http://127.0.0.1:${port}/`;
      assert.equal((await send(local, '/api/fleet')).status, 200, 'the loopback address of a wildcard bind');
      assert.equal((await send(local, '/api/fleet', { headers: { host: `backups.example:${port}` } })).status, 200, 'a --public-name');
      assert.equal((await send(local, '/api/fleet', { headers: { host: `rebound.example:${port}` } })).status, 421, 'any other name');
      const retry = await send(local, '/queues/api/queues/backup/retry/failed', { method: 'PUT', headers: { origin: `http://127.0.0.1:${port}` } });
      assert.equal(retry.status, 403, 'no auth: read-only');
    } finally {
      await insecure.close();
    }
  });
});
