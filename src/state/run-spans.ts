import type { RunRecord, RunStep } from './run-history.ts';

/**
 * A run's marks turned into bars: each step lasts from its mark to the next mark (the last one to
 * the end of the run, or to now while it runs). The quiesce window is the manifest's when the
 * backup committed, else from the stop mark to the end of the start step.
 */
export type SpanKind = 'wait' | 'stop' | 'dump' | 'start' | 'compress' | 'upload' | 'manifest' | 'verify' | 'retention' | 'backoff';

export interface Span {
  readonly kind: SpanKind;
  readonly start: number;
  readonly end: number;
  readonly artifact?: string;
  /** Still running: its end is "now". */
  readonly open: boolean;
}

export interface RunSpans {
  readonly steps: readonly Span[];
  readonly window: { readonly start: number; readonly end: number; readonly open: boolean } | null;
  readonly start: number;
  readonly end: number;
}

const kindOf: Record<RunStep, SpanKind> = {
  lock: 'wait',
  precheck: 'wait',
  stop: 'stop',
  dump: 'dump',
  start: 'start',
  compress: 'compress',
  upload: 'upload',
  manifest: 'manifest',
  verify: 'verify',
  retention: 'retention',
  'upload-retry': 'backoff',
};

export function runSpans(run: RunRecord, now: number): RunSpans {
  const end = run.endedAt ?? Math.max(now, run.startedAt);
  const open = run.endedAt === undefined;
  const marks = [...run.marks].sort((a, b) => a.at - b.at);
  const steps: Span[] = marks.map((m, i) => {
    const next = marks[i + 1];
    return { kind: kindOf[m.step], start: m.at, end: next ? next.at : end, ...(m.artifact ? { artifact: m.artifact } : {}), open: next === undefined && open };
  });

  let window: RunSpans['window'] = null;
  const q = run.backup?.quiesce;
  if (q) {
    window = { start: q.stoppedAt, end: q.startedAt, open: false };
  } else {
    const stop = steps.find((s) => s.kind === 'stop');
    if (stop) {
      const starts = steps.filter((s) => s.kind === 'start');
      const lastStart = starts[starts.length - 1];
      window = lastStart ? { start: stop.start, end: lastStart.end, open: lastStart.open } : { start: stop.start, end, open };
    }
  }
  return { steps, window, start: run.startedAt, end };
}

/** Total time spent in steps of one kind (dump, upload...), ms. */
export function timeIn(spans: RunSpans, kind: SpanKind): number {
  return spans.steps.filter((s) => s.kind === kind).reduce((sum, s) => sum + (s.end - s.start), 0);
}
