import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RunRecord } from '../state/run-history.ts';
import { runSpans, timeIn } from '../state/run-spans.ts';
import { sizeDrop, type SizedBackup } from '../state/size-drop.ts';
import type { FleetView } from './fleet-view.ts';

/**
 * /metrics through prom-client. Three sources, each read from Redis on a scrape:
 * - the fleet view (the same data as the page): per-target gauges and counters;
 * - the run history: every committed backup observed once into the duration histograms
 *   (quiesce window, dump, compress, upload, total). A new dashboard process observes the runs
 *   Redis still holds (40 days), so its histograms start where the last one's were;
 * - BullMQ: job counts per queue and state under BullMQ's own metric name (bullmq_job_count,
 *   as Queue.exportPrometheusMetrics writes it) and the number of connected workers.
 * A per-target gauge is absent while it has no value (no good backup yet), as Prometheus
 * expects, rather than a misleading 0.
 */
export const metricNamePrefix = 'vcsa_backup_';

export interface QueueStats {
  readonly queue: string;
  /** BullMQ's getJobCounts(): waiting, active, delayed, failed, completed, paused, prioritized… */
  readonly counts: Readonly<Record<string, number>>;
  /** Workers connected to this queue (BullMQ's getWorkersCount). */
  readonly workers: number;
}

export interface MetricsInput {
  readonly view: FleetView;
  readonly queues: readonly QueueStats[];
  /** Newest first, per target (fleet state's recent successes). */
  readonly sizes: ReadonlyMap<string, readonly SizedBackup[]>;
  /** retention.minSizeRatio. */
  readonly sizeDropRatio: number;
  /** Runs that ended since `observedSince()`; those already observed are skipped. */
  readonly endedRuns: readonly RunRecord[];
}

// Seconds. A VCSA's quiesce window is seconds to tens of minutes; uploads of large VCDBs take hours.
const windowBuckets = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600];
const transferBuckets = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200];
const totalBuckets = [5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400];

/** Runs written by clocks a little behind ours still count: look back this far past the newest end seen. */
const lateWriteMarginMs = 5 * 60_000;

export class DashboardMetrics {
  readonly registry = new Registry();
  readonly #seen = new Map<string, number>();
  #watermark = 0;

  readonly #lastSuccess: Gauge;
  readonly #lastDuration: Gauge;
  readonly #lastQuiesce: Gauge;
  readonly #lastSize: Gauge;
  readonly #lastRawSize: Gauge;
  readonly #sizeRatio: Gauge;
  readonly #sizeDrop: Gauge;
  readonly #sizeDropThreshold: Gauge;
  readonly #uploaded: Counter;
  readonly #successes: Counter;
  readonly #failures: Counter;
  readonly #retries: Counter;
  readonly #uploadRetries: Counter;
  readonly #lastFailure: Gauge;
  readonly #failing: Gauge;
  readonly #stale: Gauge;
  readonly #verifyOk: Gauge;
  readonly #queueJobs: Gauge;
  readonly #leaseHeld: Gauge;
  readonly #leaseExpired: Gauge;
  readonly #bullJobs: Gauge;
  readonly #workers: Gauge;
  readonly #quiesceHist: Histogram;
  readonly #dumpHist: Histogram;
  readonly #compressHist: Histogram;
  readonly #uploadHist: Histogram;
  readonly #durationHist: Histogram;

  constructor(options: { processMetrics?: boolean } = {}) {
    const r = [this.registry];
    const gauge = (name: string, help: string, labelNames: string[] = ['target']): Gauge => new Gauge({ name: `${metricNamePrefix}${name}`, help, labelNames, registers: r });
    const counter = (name: string, help: string): Counter => new Counter({ name: `${metricNamePrefix}${name}`, help, labelNames: ['target'], registers: r });
    const histogram = (name: string, help: string, buckets: number[]): Histogram => new Histogram({ name: `${metricNamePrefix}${name}`, help, labelNames: ['target'], buckets, registers: r });
    this.#lastSuccess = gauge('last_success_timestamp_seconds', 'Completion time of the last good backup (unix seconds).');
    this.#lastDuration = gauge('last_duration_seconds', 'Duration of the last good backup, first contact with the appliance to manifest.');
    this.#lastQuiesce = gauge('last_quiesce_seconds', 'Quiesce window (services stopped) of the last good backup.');
    this.#lastSize = gauge('last_size_bytes', 'Stored (compressed) size of the last good backup.');
    this.#lastRawSize = gauge('last_raw_size_bytes', 'Size of the dumps of the last good backup before compression.');
    this.#sizeRatio = gauge('size_ratio', 'Stored size of the last good backup divided by that of the one before it.');
    this.#sizeDrop = gauge('size_drop', '1 when the last good backup is smaller than retention.minSizeRatio times the one before it.');
    this.#sizeDropThreshold = gauge('size_drop_threshold_ratio', 'retention.minSizeRatio: the size ratio under which a backup counts as a size drop.', []);
    this.#uploaded = counter('uploaded_bytes_total', 'Bytes of committed backups uploaded.');
    this.#successes = counter('successes_total', 'Backups that committed.');
    this.#failures = counter('failures_total', 'Backups that failed for good (last attempt, or a permanent error).');
    this.#retries = counter('retries_total', 'Backup attempts that failed and were retried.');
    this.#uploadRetries = counter('upload_retries_total', 'Upload attempts retried from the spool.');
    this.#lastFailure = gauge('last_failure_timestamp_seconds', 'Time of the last failed attempt (unix seconds).', ['target', 'code']);
    this.#failing = gauge('failing', '1 when the last failure is newer than the last good backup.');
    this.#stale = gauge('stale', '1 when there is no good backup younger than the staleness threshold.');
    this.#verifyOk = gauge('last_verify_ok', '1 when the last restore drill (verify) passed, 0 when it failed.');
    this.#queueJobs = gauge('queue_jobs', 'Jobs per queue and state (waiting, active, delayed, failed).', ['queue', 'state']);
    this.#leaseHeld = gauge('lease_held', '1 while the target holds the fleet quiesce lease (its services may be stopped).');
    this.#leaseExpired = gauge('lease_expired', '1 while the target holds an expired lease (the watchdog is restarting it).');
    this.#bullJobs = new Gauge({ name: 'bullmq_job_count', help: 'Number of jobs in the queue by state', labelNames: ['queue', 'state'], registers: r });
    this.#workers = gauge('workers', 'Worker processes connected to the queue (BullMQ getWorkersCount).', ['queue']);
    this.#quiesceHist = histogram('quiesce_window_seconds', 'Quiesce windows of committed backups: services stopped until confirmed running again.', windowBuckets);
    this.#dumpHist = histogram('dump_seconds', 'Time spent dumping the databases, per committed backup.', windowBuckets);
    this.#compressHist = histogram('compress_seconds', 'Time spent compressing (and encrypting) the dumps, per committed backup.', transferBuckets);
    this.#uploadHist = histogram('upload_seconds', 'Time spent uploading to S3, per committed backup (all upload attempts).', transferBuckets);
    this.#durationHist = histogram('duration_seconds', 'Total duration of committed backups, first contact with the appliance to manifest.', totalBuckets);
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: `${metricNamePrefix}dashboard_` });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Where to start reading ended runs from the history (epoch ms). */
  observedSince(): number {
    return Math.max(0, this.#watermark - lateWriteMarginMs);
  }

  update(input: MetricsInput): void {
    const { view } = input;
    for (const m of [this.#lastSuccess, this.#lastDuration, this.#lastQuiesce, this.#lastSize, this.#lastRawSize, this.#sizeRatio, this.#sizeDrop, this.#lastFailure, this.#failing, this.#stale, this.#verifyOk, this.#queueJobs, this.#leaseHeld, this.#leaseExpired, this.#bullJobs, this.#workers]) m.reset();
    for (const c of [this.#uploaded, this.#successes, this.#failures, this.#retries, this.#uploadRetries]) c.reset();
    this.#sizeDropThreshold.set(input.sizeDropRatio);

    for (const t of view.targets) {
      const target = { target: t.name };
      const g = t.lastGood;
      if (g) {
        this.#lastSuccess.set(target, Date.parse(g.at) / 1000);
        this.#lastDuration.set(target, g.durationMs / 1000);
        this.#lastQuiesce.set(target, g.quiesceMs / 1000);
        this.#lastSize.set(target, g.bytes);
        this.#lastRawSize.set(target, g.rawBytes);
      }
      const sizes = input.sizes.get(t.name) ?? [];
      const [latest, previous] = sizes;
      if (latest && previous && previous.bytes > 0) {
        this.#sizeRatio.set(target, latest.bytes / previous.bytes);
        this.#sizeDrop.set(target, sizeDrop(sizes, input.sizeDropRatio) ? 1 : 0);
      } else if (latest) {
        this.#sizeDrop.set(target, 0);
      }
      this.#uploaded.inc(target, t.counts.bytesUploaded);
      this.#successes.inc(target, t.counts.successes);
      this.#failures.inc(target, t.counts.failures);
      this.#retries.inc(target, t.counts.retries);
      this.#uploadRetries.inc(target, t.counts.uploadRetries);
      if (t.lastFailure) this.#lastFailure.set({ ...target, code: t.lastFailure.code }, Date.parse(t.lastFailure.at) / 1000);
      this.#failing.set(target, t.lastFailure?.current ? 1 : 0);
      this.#stale.set(target, t.stale ? 1 : 0);
      if (t.lastVerify) this.#verifyOk.set(target, t.lastVerify.ok ? 1 : 0);
      const held = view.lease.find((l) => l.target === t.name);
      this.#leaseHeld.set(target, held ? 1 : 0);
      this.#leaseExpired.set(target, held?.expired ? 1 : 0);
    }
    for (const q of view.queues) {
      for (const state of ['waiting', 'active', 'delayed', 'failed'] as const) this.#queueJobs.set({ queue: q.queue, state }, q[state]);
    }
    for (const q of input.queues) {
      for (const [state, n] of Object.entries(q.counts)) this.#bullJobs.set({ queue: q.queue, state }, n);
      this.#workers.set({ queue: q.queue }, q.workers);
    }
    this.#observe(input.endedRuns);
  }

  #observe(runs: readonly RunRecord[]): void {
    for (const run of runs) {
      if (run.endedAt === undefined || this.#seen.has(run.runId)) continue;
      this.#seen.set(run.runId, run.endedAt);
      this.#watermark = Math.max(this.#watermark, run.endedAt);
      const b = run.backup;
      if (!b) continue;
      const target = { target: run.target };
      const spans = runSpans(run, run.endedAt);
      if (b.quiesce) this.#quiesceHist.observe(target, (b.quiesce.startedAt - b.quiesce.stoppedAt) / 1000);
      this.#dumpHist.observe(target, timeIn(spans, 'dump') / 1000);
      this.#compressHist.observe(target, timeIn(spans, 'compress') / 1000);
      this.#uploadHist.observe(target, timeIn(spans, 'upload') / 1000);
      this.#durationHist.observe(target, b.durationMs / 1000);
    }
    const forget = this.#watermark - 2 * lateWriteMarginMs;
    for (const [id, endedAt] of this.#seen) if (endedAt < forget) this.#seen.delete(id);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
