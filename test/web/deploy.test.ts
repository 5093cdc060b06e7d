/**
 * deploy/grafana/vcsa-backup.json and deploy/prometheus/alerts.yml: the dashboard parses and
 * every query names only metrics the dashboard exports; the alert rules pass `promtool check
 * rules` and their unit tests (`promtool test rules`, alerts.test.yml) and name only exported
 * metrics too. promtool comes from Debian's prometheus package (scripts/test-setup.sh).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { DashboardMetrics } from '../../src/web/metrics.ts';
import { repoRoot } from '../support/images.ts';

/** Every sample name /metrics can carry: families, and for histograms their _bucket/_sum/_count. */
async function exportedNames(): Promise<Set<string>> {
  const metrics = new DashboardMetrics();
  const names = new Set<string>();
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${m.name}${s}`);
  }
  return names;
}

/** Metric names in a PromQL expression: identifiers that are not functions, keywords, labels or durations. */
function metricNames(expr: string): string[] {
  const withoutStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const withoutLabels = withoutStrings.replace(/\{[^}]*\}/g, '{}').replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const out: string[] = [];
  for (const m of withoutLabels.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()/g)) {
    const name = m[1]!;
    if (['and', 'or', 'unless', 'bool', 'offset', 'le', 'on', 'ignoring', 'group_left', 'group_right', 'by', 'without'].includes(name)) continue;
    if (/^\d/.test(name)) continue;
    out.push(name);
  }
  return out.filter((n) => !/^[0-9]+[smhdwy]$/.test(n));
}

function promtool(args: readonly string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile('promtool', args, { cwd: join(repoRoot, 'deploy', 'prometheus'), encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 127) : 0, output: `${stdout}${stderr}` });
    });
  });
}

void describe('deploy/: Grafana dashboard and Prometheus alerts', () => {
  void test('the Grafana dashboard parses and queries only exported metrics', async () => {
    const names = await exportedNames();
    const dash = JSON.parse(await readFile(join(repoRoot, 'deploy', 'grafana', 'vcsa-backup.json'), 'utf8')) as { title: string; uid: string; panels: { title: string; targets?: { expr: string }[] }[]; templating: { list: { query?: unknown }[] } };
    assert.equal(dash.uid, 'vcsa-backup');
    assert.ok(dash.panels.length >= 10);
    const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
    for (const v of dash.templating.list) {
      const q = v.query as { query?: string } | string | undefined;
      const text = typeof q === 'object' ? q.query : q;
      if (text?.startsWith('label_values(')) exprs.push({ panel: 'variable', expr: text.slice('label_values('.length, text.indexOf(',')) });
    }
    const used = new Set<string>();
    for (const { panel, expr } of exprs) {
      const found = metricNames(expr);
      assert.ok(found.length > 0, `${panel}: no metric in ${expr}`);
      for (const n of found) {
        assert.ok(names.has(n), `${panel}: ${n} is not exported by /metrics (${expr})`);
        used.add(n);
      }
    }
    for (const wanted of ['vcsa_backup_quiesce_window_seconds_bucket', 'vcsa_backup_dump_seconds_bucket', 'vcsa_backup_upload_seconds_bucket', 'vcsa_backup_duration_seconds_bucket', 'bullmq_job_count', 'vcsa_backup_size_ratio']) {
      assert.ok(used.has(wanted), `the dashboard shows ${wanted}`);
    }
  });

  void test('the alert rules name only exported metrics and cover the five conditions', async () => {
    const names = await exportedNames();
    const rules = (parse(await readFile(join(repoRoot, 'deploy', 'prometheus', 'alerts.yml'), 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] }).groups.flatMap((g) => g.rules);
    for (const r of rules) {
      for (const n of metricNames(r.expr)) assert.ok(names.has(n) || n === 'up' || n === 'time', `${r.alert}: ${n} is not exported (${r.expr})`);
    }
    assert.deepEqual(
      rules.map((r) => r.alert).sort(),
      ['VcsaBackupDashboardDown', 'VcsaBackupLastBackupFailed', 'VcsaBackupNeverBackedUp', 'VcsaBackupNoRecentGoodBackup', 'VcsaBackupNoWorkers', 'VcsaBackupQuiesceWindowLong', 'VcsaBackupSizeDrop'],
    );
  });

  void test('promtool check rules and promtool test rules pass', async () => {
    const check = await promtool(['check', 'rules', 'alerts.yml']);
    assert.equal(check.code, 0, check.output);
    assert.match(check.output, /SUCCESS: 7 rules found/);
    const unit = await promtool(['test', 'rules', 'alerts.test.yml']);
    assert.equal(unit.code, 0, unit.output);
    assert.match(unit.output, /SUCCESS/);
  });
});
