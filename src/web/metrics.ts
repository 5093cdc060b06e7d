import type { FleetView } from './fleet-view.ts';

/**
 * /metrics in the Prometheus text format (version 0.0.4). Built from the same FleetView as the
 * page. A per-target gauge is absent while it has no value (no good backup yet), as Prometheus
 * expects, rather than a misleading 0.
 */
export const metricsContentType = 'text/plain; version=0.0.4; charset=utf-8';

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter';
  readonly samples: { labels: Record<string, string>; value: number }[];
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatSample(name: string, labels: Record<string, string>, value: number): string {
  const l = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',');
  return `${name}${l ? `{${l}}` : ''} ${Number.isFinite(value) ? String(value) : 'NaN'}`;
}

export function renderMetrics(view: FleetView): string {
  const fam = (name: string, type: Family['type'], help: string): Family => ({ name: `vcsa_backup_${name}`, type, help, samples: [] });
  const lastSuccess = fam('last_success_timestamp_seconds', 'gauge', 'Completion time of the last good backup (unix seconds).');
  const lastDuration = fam('last_duration_seconds', 'gauge', 'Duration of the last good backup, stop to manifest.');
  const quiesce = fam('last_quiesce_seconds', 'gauge', 'Quiesce window (services stopped) of the last good backup.');
  const size = fam('last_size_bytes', 'gauge', 'Stored (compressed) size of the last good backup.');
  const uploaded = fam('uploaded_bytes_total', 'counter', 'Bytes of committed backups uploaded.');
  const successes = fam('successes_total', 'counter', 'Backups that committed.');
  const failures = fam('failures_total', 'counter', 'Backups that failed for good (last attempt, or a permanent error).');
  const retries = fam('retries_total', 'counter', 'Backup attempts that failed and were retried.');
  const uploadRetries = fam('upload_retries_total', 'counter', 'Upload attempts retried from the spool.');
  const lastFailure = fam('last_failure_timestamp_seconds', 'gauge', 'Time of the last failed attempt (unix seconds).');
  const failing = fam('failing', 'gauge', '1 when the last failure is newer than the last good backup.');
  const stale = fam('stale', 'gauge', '1 when there is no good backup younger than the staleness threshold.');
  const verifyOk = fam('last_verify_ok', 'gauge', '1 when the last restore drill (verify) passed, 0 when it failed.');
  const queueJobs = fam('queue_jobs', 'gauge', 'Jobs per queue and state.');
  const leaseHeld = fam('lease_held', 'gauge', '1 while the target holds the fleet quiesce lease (its services may be stopped).');
  const leaseExpired = fam('lease_expired', 'gauge', '1 while the target holds an expired lease (the watchdog is restarting it).');

  for (const t of view.targets) {
    const target = { target: t.name };
    const g = t.lastGood;
    if (g) {
      lastSuccess.samples.push({ labels: target, value: Date.parse(g.at) / 1000 });
      lastDuration.samples.push({ labels: target, value: g.durationMs / 1000 });
      quiesce.samples.push({ labels: target, value: g.quiesceMs / 1000 });
      size.samples.push({ labels: target, value: g.bytes });
    }
    uploaded.samples.push({ labels: target, value: t.counts.bytesUploaded });
    successes.samples.push({ labels: target, value: t.counts.successes });
    failures.samples.push({ labels: target, value: t.counts.failures });
    retries.samples.push({ labels: target, value: t.counts.retries });
    uploadRetries.samples.push({ labels: target, value: t.counts.uploadRetries });
    if (t.lastFailure) lastFailure.samples.push({ labels: { ...target, code: t.lastFailure.code }, value: Date.parse(t.lastFailure.at) / 1000 });
    failing.samples.push({ labels: target, value: t.lastFailure?.current ? 1 : 0 });
    stale.samples.push({ labels: target, value: t.stale ? 1 : 0 });
    if (t.lastVerify) verifyOk.samples.push({ labels: target, value: t.lastVerify.ok ? 1 : 0 });
    const held = view.lease.find((l) => l.target === t.name);
    leaseHeld.samples.push({ labels: target, value: held ? 1 : 0 });
    leaseExpired.samples.push({ labels: target, value: held?.expired ? 1 : 0 });
  }
  for (const q of view.queues) {
    for (const state of ['waiting', 'active', 'delayed', 'failed'] as const) {
      queueJobs.samples.push({ labels: { queue: q.queue, state }, value: q[state] });
    }
  }

  const families = [lastSuccess, lastDuration, quiesce, size, uploaded, successes, failures, retries, uploadRetries, lastFailure, failing, stale, verifyOk, queueJobs, leaseHeld, leaseExpired];
  const lines: string[] = [];
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) lines.push(formatSample(f.name, s.labels, s.value));
  }
  return `${lines.join('\n')}\n`;
}
