/**
 * The operator's pages in a real browser (headless Chromium through playwright-core) over a
 * simulated fleet of three appliances backed up by one worker running two jobs at a time with
 * quiesce.maxConcurrent 1: the timeline shows every appliance's quiesce window and no two overlap;
 * the appliance page lists the backup with its restore command, "Run backup now" (confirmed)
 * makes a new one appear, "Run verify now" records a passing drill; without the token every page
 * and action answers 401; actions need the CSRF token; read-only mode hides and refuses them.
 * Screenshots go to test-artifacts/ (gitignored).
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Locator } from 'playwright-core';
import type { Config } from '../../src/config/load.ts';
import { silentLogger } from '../../src/log.ts';
import { renderApplianceBody, restoreCommand } from '../../src/web/pages.ts';
import { startDashboard, type RunningDashboard } from '../../workers/dashboard.ts';
import { repoRoot } from '../support/images.ts';
import { startTestFleet, type TestFleet } from './fleet-fixture.ts';

const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const artifacts = join(repoRoot, 'test-artifacts', 'web');
const token = 'pages-token-0123456789';

/** Attributes of every element a locator matches (the tests' tsconfig has no DOM types for evaluate). */
async function attributes<T>(locator: Locator, pick: (get: (name: string) => string) => T): Promise<T[]> {
  const out: T[] = [];
  for (const el of await locator.all()) {
    const names = ['data-target', 'data-start', 'data-end', 'data-step', 'data-backup'];
    const values = new Map<string, string>();
    for (const n of names) values.set(n, (await el.getAttribute(n)) ?? '');
    out.push(pick((n) => values.get(n) ?? ''));
  }
  return out;
}

void describe('dashboard pages in a browser', { timeout: 240_000 }, () => {
  let t: TestFleet;
  let config: Config;
  let dashboard: RunningDashboard;
  let browser: Browser;
  let context: BrowserContext;

  before(async () => {
    await mkdir(artifacts, { recursive: true });
    t = await startTestFleet({
      count: 3,
      name: 'web-pages',
      tune: (raw) => {
        raw['quiesce'] = { ...(raw['quiesce'] as object), maxConcurrent: 1 };
        raw['dashboard'] = { token: { env: 'PAGES_TOKEN' } };
      },
    });
    config = t.config;
    t.startWorker();
    dashboard = await startDashboard({ config, logger: silentLogger, port: 0, env: { PAGES_TOKEN: token } });
    // A fresh profile per launch: playwright-core makes a temporary user-data-dir.
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: chromiumArgs });
    context = await browser.newContext({ extraHTTPHeaders: { authorization: `Bearer ${token}` }, viewport: { width: 1280, height: 900 } });
  });

  after(async () => {
    await context?.close();
    await browser?.close();
    await dashboard?.close();
    await t?.cleanup();
  });

  void test('the timeline shows each appliance quiesced once, never two at a time', async () => {
    const outcomes = await t.backUp(['vc01', 'vc02', 'vc03']);
    assert.deepEqual(outcomes.map((o) => o.ok), [true, true, true], JSON.stringify(outcomes));
    const page = await context.newPage();
    await page.goto(`${dashboard.url}timeline`);
    const windows = await attributes(page.locator('#timeline-svg rect.window'), (get) => ({ target: get('data-target'), start: Number(get('data-start')), end: Number(get('data-end')) }));
    assert.deepEqual(windows.map((w) => w.target).sort(), ['vc01', 'vc02', 'vc03'], 'one quiesce window per appliance');
    const sorted = [...windows].sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++) {
      assert.ok(sorted[i]!.start >= sorted[i - 1]!.end, `windows overlap: ${JSON.stringify(sorted)}`);
    }
    for (const w of windows) assert.ok(w.end > w.start, `${w.target}: a window has a length`);
    assert.equal(await page.locator('#timeline-svg').getAttribute('data-peak'), '1');
    assert.match(await page.locator('#fleet-limit').innerText(), /At most 1 appliance\(s\) quiesced at once; the limit \(quiesce\.maxConcurrent\) is 1\./);
    for (const name of ['vc01', 'vc02', 'vc03']) {
      const steps = await attributes(page.locator(`#timeline-svg g.row[data-target="${name}"] rect.step`), (get) => get('data-step'));
      for (const kind of ['dump', 'compress', 'upload', 'manifest']) assert.ok(steps.includes(kind), `${name} shows ${kind}: ${steps.join(',')}`);
    }
    await page.screenshot({ path: join(artifacts, 'timeline.png'), fullPage: true });
    // A chosen night renders too (today's, which holds these runs).
    const night = new Date(Date.now() - 12 * 3600_000).toISOString().slice(0, 10);
    await page.goto(`${dashboard.url}timeline?night=${night}`);
    assert.equal(await page.locator('#timeline-svg rect.window').count(), 3);
    await page.goto(dashboard.url);
    await page.screenshot({ path: join(artifacts, 'fleet.png'), fullPage: true });
    await page.close();
  });

  void test('the appliance page: history, restore command, and "Run backup now" / "Run verify now" with a confirmation and live progress', async () => {
    const page = await context.newPage();
    await page.goto(`${dashboard.url}appliance/vc01`);
    const rows = page.locator('#backups tbody tr');
    assert.equal(await rows.count(), 1);
    const firstId = (await rows.first().getAttribute('data-backup')) ?? '';
    assert.equal(await rows.first().locator('code.cmd').innerText(), restoreCommand(config.source, 'vc01', firstId));
    assert.equal(await page.locator('svg.chart[data-chart="bytes"]').getAttribute('data-points'), '1');

    await page.getByRole('button', { name: 'Run backup now' }).click();
    assert.match(await page.locator('#confirm-text').innerText(), /Back up vc01 now\?/);
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.locator('#progress', { hasText: /backup backup\.vc01\./ }).waitFor({ timeout: 10_000 });
    // The page reloads itself when the job completes: the new backup is listed.
    await page.locator('#backups tbody tr').nth(1).waitFor({ timeout: 90_000 });
    const ids = await attributes(page.locator('#backups tbody tr'), (get) => get('data-backup'));
    assert.equal(ids.length, 2);
    assert.equal(ids[1], firstId, 'newest first');
    assert.equal(await page.locator('svg.chart[data-chart="quiesce"]').getAttribute('data-points'), '2');

    await page.getByRole('button', { name: 'Run verify now' }).click();
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.locator('#backups tbody tr').first().locator('td.verify .ok').waitFor({ timeout: 120_000 });
    await page.screenshot({ path: join(artifacts, 'appliance-vc01.png'), fullPage: true });
    await page.close();
  });

  void test('without the token every page and action answers 401; actions need the CSRF token; read-only hides them', async () => {
    const sameOrigin = new URL(dashboard.url).origin;
    for (const path of ['', 'timeline', 'timeline.svg', 'appliance/vc01', 'api/job?id=x', 'api/verify-task?id=x', 'api/fleet', 'metrics']) {
      assert.equal((await fetch(`${dashboard.url}${path}`)).status, 401, `GET /${path}`);
    }
    for (const action of ['backup', 'verify', 'retry']) {
      const res = await fetch(`${dashboard.url}actions/${action}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: 'vc02', jobId: 'x' }) });
      assert.equal(res.status, 401, `POST /actions/${action}`);
      const noCsrf = await fetch(`${dashboard.url}actions/${action}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, origin: sameOrigin }, body: JSON.stringify({ target: 'vc02', jobId: 'x' }) });
      assert.equal(noCsrf.status, 403, `POST /actions/${action} without the CSRF token`);
    }
    const page = await context.newPage();
    await page.goto(`${dashboard.url}appliance/vc02`);
    const csrf = (await page.locator('meta[name="csrf-token"]').getAttribute('content')) ?? '';
    await page.close();
    // Browsers send Origin on every POST; the request guard refuses one without it.
    const base = { authorization: `Bearer ${token}`, 'x-csrf-token': csrf, 'content-type': 'application/json', origin: sameOrigin };
    const crossSite = await fetch(`${dashboard.url}actions/backup`, { method: 'POST', headers: { ...base, origin: 'http://evil.example' }, body: JSON.stringify({ target: 'vc02' }) });
    assert.equal(crossSite.status, 403, 'another origin');
    const form = await fetch(`${dashboard.url}actions/backup`, { method: 'POST', headers: { ...base, 'content-type': 'application/x-www-form-urlencoded' }, body: 'target=vc02' });
    assert.equal(form.status, 403, 'a form post');
    const unknown = await fetch(`${dashboard.url}actions/backup`, { method: 'POST', headers: base, body: JSON.stringify({ target: 'nope' }) });
    assert.equal(unknown.status, 400);

    const readOnly = await startDashboard({ config: { ...config, dashboard: { ...config.dashboard, readOnly: true } }, logger: silentLogger, port: 0, env: { PAGES_TOKEN: token } });
    try {
      const html = await (await fetch(`${readOnly.url}appliance/vc02`, { headers: { authorization: `Bearer ${token}` } })).text();
      assert.doesNotMatch(html, /Run backup now|csrf-token/);
      const res = await fetch(`${readOnly.url}actions/backup`, { method: 'POST', headers: { ...base, origin: new URL(readOnly.url).origin }, body: JSON.stringify({ target: 'vc02' }) });
      assert.equal(res.status, 403);
      assert.match(((await res.json()) as { error: string }).error, /read-only/);
    } finally {
      await readOnly.close();
    }
  });

  void test('a size drop is highlighted on the appliance page', () => {
    const b = (id: string, bytes: number, drop: boolean) => ({
      id, at: Date.parse('2026-01-01T02:00:00Z'), completedAt: 0, bytes, rawBytes: bytes * 4, quiesceMs: 1000, durationMs: 3000, encrypted: false, verify: null,
      sizeDrop: drop ? { id, bytes, previousId: 'old', previousBytes: 1000, ratio: bytes / 1000, threshold: 0.5 } : null,
    });
    const body = renderApplianceBody({ target: 'vc01', configPath: '/etc/vcsa backup/fleet.yaml', row: null, backups: [b('new', 100, true), b('old', 1000, false)], listError: null, failedJobs: [], readOnly: true, sizeDropRatio: 0.5 }).html;
    assert.match(body, /<tr data-backup="new" class="size-drop">/);
    assert.match(body, /id="size-drop">The newest backup new is 10% of the size of the one before \(old\), under 50%/);
    assert.match(body, /vcsa-backup restore --config &#39;\/etc\/vcsa backup\/fleet.yaml&#39; --target vc01 --backup new/);
  });
});
