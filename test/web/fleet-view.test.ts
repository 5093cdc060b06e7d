import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { TargetState } from '../../src/state/fleet-state.ts';
import { authChallenge, isAuthorized, resolveDashboardAuth } from '../../src/web/auth.ts';
import { renderFleetFragments, renderFleetPage } from '../../src/web/fleet-page.ts';
import { buildFleetView } from '../../src/web/fleet-view.ts';
import type { RunRecord } from '../../src/state/run-history.ts';
import { DashboardMetrics, type MetricsInput } from '../../src/web/metrics.ts';
import { metric, parsePrometheus } from './fleet-fixture.ts';

const now = Date.parse('2026-01-10T12:00:00Z');

function state(name: string, over: Partial<TargetState> = {}): TargetState {
  return { name, lastSuccess: null, lastFailure: null, step: null, lastVerify: null, successes: 0, failures: 0, retries: 0, uploadRetries: 0, bytesUploaded: 0, lastRequeue: null, ...over };
}

async function renderMetrics(view: MetricsInput['view'], extra: Partial<MetricsInput> = {}, metrics = new DashboardMetrics({ processMetrics: false })): Promise<string> {
  metrics.update({ view, queues: [], sizes: new Map(), sizeDropRatio: 0.5, endedRuns: [], ...extra });
  return metrics.render();
}

const success = (at: string) => ({ id: at.replace(/[-:]/g, ''), at, manifestKey: 'k', bytes: 2048, rawBytes: 8192, quiesceMs: 1500, durationMs: 4000 });

void describe('fleet view, page and metrics', () => {
  const view = buildFleetView({
    states: [
      state('fresh', { lastSuccess: success('2026-01-10T02:00:00.000Z'), successes: 3, bytesUploaded: 6144 }),
      state('old', { lastSuccess: success('2026-01-09T09:00:00.000Z'), lastFailure: { at: '2026-01-10T02:05:00.000Z', code: 'COMMAND_FAILED', message: '<img src=x onerror=alert(1)> "quoted"\nline2' }, failures: 1 }),
      state('never', { step: { step: 'dump', at: '2026-01-10T11:59:59.000Z', artifact: 'vcdb', bytes: 1024, holder: 'w1:1:abc' } }),
    ],
    holders: [{ target: 'never', token: 7, holder: 'w1:1:abc', since: now - 5000, expiresAt: now + 25_000 }],
    nextRuns: new Map([['fresh', Date.parse('2026-01-11T02:00:00Z')]]),
    queues: [{ queue: 'backup', waiting: 2, active: 1, delayed: 0, failed: 1 }],
    staleHours: 26,
    now,
  });

  void test('age past the threshold is stale; a failure after the last success is current', () => {
    const [fresh, old, never] = view.targets;
    assert.equal(fresh?.stale, false);
    assert.equal(fresh?.lastGood?.ageSeconds, 10 * 3600);
    assert.equal(old?.stale, true, '27 h old');
    assert.equal(old?.lastFailure?.current, true);
    assert.equal(never?.stale, true);
    assert.equal(view.lease[0]?.expired, false);
  });

  void test('the page escapes what appliances and errors say', () => {
    const { rows } = renderFleetFragments(view);
    assert.doesNotMatch(rows, /<img/);
    assert.match(rows, /&#60;img src=x onerror=alert\(1\)&#62; &#34;quoted&#34;/);
    assert.match(rows, /<tr data-target="old" class="stale failing">/);
    assert.match(rows, /<tr data-target="fresh" class="">/);
    const page = renderFleetPage(view, { nonce: 'n0nce', refreshMs: 2000 });
    assert.match(page, /<script nonce="n0nce">/);
    assert.doesNotMatch(page, /<(script|link|img)[^>]+(src|href)="http/, 'no external assets');
  });

  void test('metrics: one sample per target and queue state, labels escaped, absent when unknown', async () => {
    const { samples, types } = parsePrometheus(await renderMetrics(view));
    assert.equal(metric(samples, 'vcsa_backup_last_success_timestamp_seconds', { target: 'fresh' }), Date.parse('2026-01-10T02:00:00Z') / 1000);
    assert.equal(metric(samples, 'vcsa_backup_last_success_timestamp_seconds', { target: 'never' }), undefined);
    assert.equal(metric(samples, 'vcsa_backup_last_quiesce_seconds', { target: 'fresh' }), 1.5);
    assert.equal(metric(samples, 'vcsa_backup_last_duration_seconds', { target: 'old' }), 4);
    assert.equal(metric(samples, 'vcsa_backup_uploaded_bytes_total', { target: 'fresh' }), 6144);
    assert.equal(metric(samples, 'vcsa_backup_stale', { target: 'old' }), 1);
    assert.equal(metric(samples, 'vcsa_backup_lease_held', { target: 'never' }), 1);
    assert.equal(metric(samples, 'vcsa_backup_lease_held', { target: 'fresh' }), 0);
    assert.equal(metric(samples, 'vcsa_backup_queue_jobs', { queue: 'backup', state: 'waiting' }), 2);
    assert.equal(types.get('vcsa_backup_uploaded_bytes_total'), 'counter');
    const weird = buildFleetView({ states: [state('a"b\\c')], holders: [], nextRuns: new Map(), queues: [], staleHours: 1, now });
    assert.equal(metric(parsePrometheus(await renderMetrics(weird)).samples, 'vcsa_backup_failures_total', { target: 'a"b\\c' }), 0);
  });

  void test('metrics: committed runs go into the histograms once; size drops and BullMQ counts', async () => {
    const metrics = new DashboardMetrics({ processMetrics: false });
    const run = (id: string, endedAt: number, windowS: number): RunRecord => ({
      runId: `${id}#1`, jobId: id, target: 'fresh', attempt: 1, maxAttempts: 1, trigger: 'run', holder: 'w', startedAt: endedAt - 100_000, endedAt, outcome: 'ok',
      marks: [{ step: 'stop', at: endedAt - 90_000 }, { step: 'dump', at: endedAt - 80_000, artifact: 'vcdb' }, { step: 'start', at: endedAt - 50_000 }, { step: 'upload', at: endedAt - 40_000 }, { step: 'manifest', at: endedAt - 10_000 }],
      backup: { id, committedAt: endedAt, bytes: 1, rawBytes: 2, durationMs: 95_000, quiesce: { stoppedAt: endedAt - 90_000, startedAt: endedAt - 90_000 + windowS * 1000 } },
    });
    const r1 = run('a', now - 1000, 40);
    const sizes = new Map([['fresh', [{ id: 'b', at: '', bytes: 30, rawBytes: 300 }, { id: 'a', at: '', bytes: 100, rawBytes: 1000 }]]]);
    const queues = [{ queue: 'backup', counts: { waiting: 1, completed: 5 }, workers: 2 }];
    await renderMetrics(view, { endedRuns: [r1], sizes, queues }, metrics);
    const text = await renderMetrics(view, { endedRuns: [r1, run('b', now, 4)], sizes, queues }, metrics);
    const { samples, types } = parsePrometheus(text);
    assert.equal(types.get('vcsa_backup_quiesce_window_seconds'), 'histogram');
    assert.equal(metric(samples, 'vcsa_backup_quiesce_window_seconds_count', { target: 'fresh' }), 2, 'each run once');
    assert.equal(metric(samples, 'vcsa_backup_quiesce_window_seconds_sum', { target: 'fresh' }), 44);
    assert.equal(metric(samples, 'vcsa_backup_quiesce_window_seconds_bucket', { target: 'fresh', le: '5' }), 1);
    assert.equal(metric(samples, 'vcsa_backup_dump_seconds_sum', { target: 'fresh' }), 60);
    assert.equal(metric(samples, 'vcsa_backup_upload_seconds_sum', { target: 'fresh' }), 60);
    assert.equal(metric(samples, 'vcsa_backup_duration_seconds_count', { target: 'fresh' }), 2);
    assert.equal(metric(samples, 'vcsa_backup_size_ratio', { target: 'fresh' }), 0.3);
    assert.equal(metric(samples, 'vcsa_backup_size_drop', { target: 'fresh' }), 1);
    assert.equal(metric(samples, 'vcsa_backup_size_drop_threshold_ratio', {}), 0.5);
    assert.equal(metric(samples, 'bullmq_job_count', { queue: 'backup', state: 'completed' }), 5);
    assert.equal(metric(samples, 'vcsa_backup_workers', { queue: 'backup' }), 2);
  });

  void test('auth: token and basic, wrong ones refused, secrets from env', () => {
    const auth = resolveDashboardAuth({ dashboard: { staleHours: 26, readOnly: false, token: { env: 'T' }, basicAuth: { user: 'ops', password: 'pw' } } }, { T: 'tok' });
    assert.equal(isAuthorized('Bearer tok', auth), true);
    assert.equal(isAuthorized('bearer tok', auth), true);
    assert.equal(isAuthorized('Bearer tok2', auth), false);
    assert.equal(isAuthorized(undefined, auth), false);
    assert.equal(isAuthorized(`Basic ${Buffer.from('ops:pw').toString('base64')}`, auth), true);
    assert.equal(isAuthorized(`Basic ${Buffer.from('ops:pw:').toString('base64')}`, auth), false);
    assert.equal(isAuthorized(`Basic ${Buffer.from('opz:pw').toString('base64')}`, auth), false);
    assert.match(authChallenge(auth), /^Basic/);
    assert.equal(isAuthorized(undefined, resolveDashboardAuth({ dashboard: { staleHours: 26, readOnly: false } }, {})), true, 'open when nothing is configured');
    assert.throws(() => resolveDashboardAuth({ dashboard: { staleHours: 26, readOnly: false, token: { env: 'MISSING' } } }, {}), /dashboard\.token: environment variable MISSING is not set/);
  });
});
