import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import type { Config } from '../../src/config/load.ts';
import { silentLogger } from '../../src/log.ts';
import { startDashboard, type RunningDashboard } from '../../workers/dashboard.ts';
import { FleetState } from '../../src/state/fleet-state.ts';
import type { JobOutcome } from '../../workers/producer.ts';
import { metric, parsePrometheus, startTestFleet, type TestFleet } from './fleet-fixture.ts';

const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

void describe('dashboard', { timeout: 90_000 }, () => {
  let t: TestFleet;
  let dashboard: RunningDashboard;
  let browser: Browser;

  const dashToken = 'dash-token-0123456789';
  before(async () => {
    // vc02 can never back up: its vPostgres binaries are looked for where there are none.
    t = await startTestFleet({
      count: 2,
      name: 'web-dash',
      tune: (raw) => {
        const targets = raw['targets'] as { name: string; variables: Record<string, string> }[];
        const bad = targets.find((x) => x.name === 'vc02')!;
        bad.variables = { ...bad.variables, VPG_BIN: '/nonexistent/vpostgres/bin' };
      },
    });
    t.startWorker();
    // With a token: without auth the dashboard is read-only (bull-board's retry would be refused).
    const withToken: Config = { ...t.config, dashboard: { ...t.config.dashboard, token: { env: 'DASH_TOKEN' } } };
    dashboard = await startDashboard({ config: withToken, logger: silentLogger, port: 0, env: { DASH_TOKEN: dashToken } });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: chromiumArgs });
  });

  after(async () => {
    await browser?.close();
    await dashboard?.close();
    await t?.cleanup();
  });

  void test('the fleet page follows a run: a good backup appears, a failure shows its reason; bull-board shows and retries the failed job; /metrics agrees', async () => {
    assert.match(dashboard.url, /^http:\/\/127\.0\.0\.1:\d+\/$/, 'binds to loopback by default');
    const page = await browser.newPage({ extraHTTPHeaders: { authorization: `Bearer ${dashToken}` } });
    await page.goto(dashboard.url);
    assert.equal(await page.locator('tr[data-target="vc01"] td.last-good').innerText(), 'never');
    assert.equal(await page.locator('tr[data-target="vc02"] td.failure').innerText(), '-');
    assert.equal(await page.locator('#lease').innerText(), 'free: no appliance is quiesced');

    const outcomes = await t.backUp(['vc01', 'vc02']);
    const good = outcomes.find((o): o is Extract<JobOutcome, { ok: true }> => o.target === 'vc01' && o.ok);
    const bad = outcomes.find((o): o is Extract<JobOutcome, { ok: false }> => o.target === 'vc02' && !o.ok);
    assert.ok(good, `vc01 backed up: ${JSON.stringify(outcomes)}`);
    assert.ok(bad, `vc02 failed: ${JSON.stringify(outcomes)}`);
    // The reason from the fleet state: waitForJobs can read a job just before it fails, without its failedReason.
    const failure = (await new FleetState(t.redis, t.config.redis.prefix).get('vc02')).lastFailure;
    assert.equal(failure?.code, 'COMMAND_FAILED');

    // No reload: the page's own refresh must bring the new state in.
    const row1 = page.locator('tr[data-target="vc01"]');
    await row1.locator('td.last-good', { hasText: good.result.id }).waitFor({ timeout: 10_000 });
    assert.doesNotMatch(await row1.getAttribute('class') ?? '', /stale/, 'a fresh backup is not highlighted');
    assert.match(await row1.locator('td.size').innerText(), /\d+(\.\d)? (B|KiB|MiB)/);
    assert.match(await row1.locator('td.downtime').innerText(), /\d+(\.\d+)? (ms|s)/);
    const row2 = page.locator('tr[data-target="vc02"]');
    await row2.locator('td.failure .code', { hasText: failure.code }).waitFor({ timeout: 10_000 });
    const reason = await row2.locator('td.failure .reason').innerText();
    assert.match(reason, /\/nonexistent\/vpostgres\/bin\/pg_dump/, `the reason names the missing pg_dump: ${reason}`);
    assert.match(await row2.getAttribute('class') ?? '', /stale/, 'never backed up: highlighted');
    assert.match(await row2.getAttribute('class') ?? '', /failing/);
    assert.equal(await page.locator('#refresh').innerText(), 'live');

    const metrics = await fetch(`${dashboard.url}metrics`, { headers: { authorization: `Bearer ${dashToken}` } });
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const { samples, types } = parsePrometheus(await metrics.text());
    const m = (name: string, labels: Record<string, string>): number | undefined => metric(samples, `vcsa_backup_${name}`, labels);
    const completedAt = Date.parse(good.result.id.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})/, '$1-$2-$3T$4:$5:$6'));
    const successAt = m('last_success_timestamp_seconds', { target: 'vc01' });
    assert.ok(successAt !== undefined && successAt * 1000 >= completedAt && successAt * 1000 <= Date.now(), `last success time of vc01: ${successAt}`);
    assert.equal(m('last_success_timestamp_seconds', { target: 'vc02' }), undefined, 'vc02 has no good backup');
    assert.equal(m('last_quiesce_seconds', { target: 'vc01' }), good.result.quiesceMs / 1000);
    assert.ok((m('last_duration_seconds', { target: 'vc01' }) ?? 0) > 0);
    const stored = good.result.artifacts.reduce((s, a) => s + a.bytes, 0);
    assert.ok(stored > 0);
    assert.equal(m('uploaded_bytes_total', { target: 'vc01' }), stored, 'bytes uploaded = the artifacts of the one backup');
    assert.equal(m('uploaded_bytes_total', { target: 'vc02' }), 0);
    assert.equal(m('successes_total', { target: 'vc01' }), 1);
    assert.equal(m('failures_total', { target: 'vc01' }), 0);
    assert.equal(m('failures_total', { target: 'vc02' }), 1);
    assert.equal(m('retries_total', { target: 'vc02' }), 0, 'one attempt, so nothing retried');
    assert.equal(m('failing', { target: 'vc02' }), 1);
    assert.equal(m('last_failure_timestamp_seconds', { target: 'vc02', code: failure.code }) !== undefined, true);
    assert.equal(m('queue_jobs', { queue: 'backup', state: 'failed' }), 1);
    assert.equal(m('queue_jobs', { queue: 'backup', state: 'active' }), 0);
    assert.equal(m('queue_jobs', { queue: 'trigger', state: 'waiting' }), 0);
    assert.equal(m('lease_held', { target: 'vc01' }), 0);
    assert.equal(m('lease_held', { target: 'vc02' }), 0);
    assert.equal(types.get('vcsa_backup_failures_total'), 'counter');

    // bull-board: the queue page lists the failed job, and retrying it runs the backup again.
    await page.goto(`${dashboard.url}queues/queue/backup?status=failed`);
    const failedJobId = (await t.redis.zrange(`${t.config.redis.prefix}:backup:failed`, '0', '-1'))[0];
    assert.ok(failedJobId?.startsWith('backup.vc02.'), `failed job: ${failedJobId}`);
    await page.getByText(failedJobId!, { exact: true }).waitFor({ timeout: 15_000 });
    await page.getByText(failure.message.slice(0, 40), { exact: false }).first().waitFor({ timeout: 5_000 });
    // The operator's way: "Retry all" on the failed tab, then confirm.
    await page.getByRole('button', { name: 'Retry all' }).click();
    await page.getByRole('button', { name: 'Confirm' }).click();
    const deadline = Date.now() + 20_000;
    for (;;) {
      const now = parsePrometheus(await (await fetch(`${dashboard.url}metrics`, { headers: { authorization: `Bearer ${dashToken}` } })).text()).samples;
      if (metric(now, 'vcsa_backup_failures_total', { target: 'vc02' }) === 2) break;
      assert.ok(Date.now() < deadline, 'the job retried from bull-board ran again and failed again');
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  void test('auth: a token or basic auth is required everywhere but /healthz; /healthz says when Redis is gone', async () => {
    const secured: Config = { ...t.config, dashboard: { ...t.config.dashboard, token: { env: 'DASH_TOKEN' }, basicAuth: { user: 'ops', password: { env: 'DASH_PASSWORD' } } } };
    const d = await startDashboard({ config: secured, logger: silentLogger, port: 0, env: { DASH_TOKEN: 'tok-0123456789', DASH_PASSWORD: 'pw-secret' } });
    try {
      for (const path of ['', 'api/fleet', 'metrics', 'queues/', 'queues/api/queues']) {
        const res = await fetch(`${d.url}${path}`);
        assert.equal(res.status, 401, `/${path} without credentials`);
        assert.match(res.headers.get('www-authenticate') ?? '', /^Basic /);
        assert.equal((await fetch(`${d.url}${path}`, { headers: { authorization: 'Bearer tok-0123456780' } })).status, 401, `/${path} wrong token`);
        assert.equal((await fetch(`${d.url}${path}`, { headers: { authorization: 'Bearer tok-0123456789' } })).status, 200, `/${path} with the token`);
        const basic = `Basic ${Buffer.from('ops:pw-secret').toString('base64')}`;
        assert.equal((await fetch(`${d.url}${path}`, { headers: { authorization: basic } })).status, 200, `/${path} with basic auth`);
        const wrongBasic = `Basic ${Buffer.from('ops:pw-secreT').toString('base64')}`;
        assert.equal((await fetch(`${d.url}${path}`, { headers: { authorization: wrongBasic } })).status, 401, `/${path} wrong password`);
      }
      assert.equal((await fetch(`${d.url}healthz`)).status, 200, '/healthz is open');
    } finally {
      await d.close();
    }

    const noRedis: Config = { ...t.config, redis: { ...t.config.redis, url: `redis://127.0.0.1:${await closedPort()}` } };
    const down = await startDashboard({ config: noRedis, logger: silentLogger, port: 0 });
    try {
      assert.equal((await fetch(`${down.url}healthz`)).status, 503);
    } finally {
      await down.close();
    }
  });

  void test('`vcsa-backup dashboard --port 0 --json` prints its URL, serves, and exits 0 on SIGTERM', async () => {
    const bin = join(import.meta.dirname, '..', '..', 'bin', 'vcsa-backup.js');
    const child = spawn(process.execPath, [bin, 'dashboard', '--config', t.config.source, '--port', '0', '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'warn' } });
    const exited = once(child, 'exit');
    let out = '';
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (b: Buffer) => {
          out += b.toString('utf8');
          if (out.includes('\n')) resolve((JSON.parse(out) as { url: string }).url);
        });
        child.on('exit', () => reject(new Error(`dashboard exited: ${err}`)));
      });
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
      assert.equal((await fetch(`${url}healthz`)).status, 200);
      const page = await fetch(url);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /data-target="vc01"/);
    } finally {
      child.kill('SIGTERM');
    }
    const [code] = await exited;
    assert.equal(code, 0, err);
  });
});
