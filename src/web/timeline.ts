import { formatDuration } from '../format.ts';
import type { RunRecord } from '../state/run-history.ts';
import { runSpans, type SpanKind } from '../state/run-spans.ts';
import { escapeHtml } from './html.ts';

/**
 * The night as a picture: one row per appliance, time across, each attempt's steps as bars and
 * its quiesce window as a bar above them; failures and retries marked; a fleet row counts the
 * appliances quiesced at each instant against quiesce.maxConcurrent. Server-rendered SVG: no
 * script, no external asset, the same picture in the page and at /timeline.svg.
 */
export interface TimelineWindow {
  readonly from: number;
  readonly to: number;
  /** How it was chosen, for the page's heading. */
  readonly label: string;
}

/** A gap this long between runs separates one night's batch from the one before. */
const batchGapMs = 2 * 3600_000;

/**
 * The window to show: `night` (YYYY-MM-DD: 12:00 UTC that day to 12:00 UTC the next, so a night
 * is never cut at midnight), `from`/`to` (ISO times), or by default the last run: the newest
 * batch of runs with no gap of two hours between them.
 */
export function chooseWindow(runs: readonly RunRecord[], query: { night?: string | null; from?: string | null; to?: string | null }, now: number): TimelineWindow | { error: string } {
  if (query.night) {
    const m = /^(\d{4}-\d{2}-\d{2})$/.exec(query.night);
    const start = m ? Date.parse(`${m[1]}T12:00:00Z`) : NaN;
    if (Number.isNaN(start)) return { error: `night: expected a date as YYYY-MM-DD, got "${query.night}"` };
    return { from: start, to: start + 24 * 3600_000, label: `night of ${query.night} (12:00 to 12:00 UTC)` };
  }
  if (query.from || query.to) {
    const from = Date.parse(query.from ?? '');
    const to = query.to ? Date.parse(query.to) : now;
    if (Number.isNaN(from) || Number.isNaN(to) || to <= from) return { error: 'from/to: expected ISO 8601 times with from before to' };
    return { from, to, label: `${new Date(from).toISOString()} to ${new Date(to).toISOString()}` };
  }
  const sorted = [...runs].sort((a, b) => a.startedAt - b.startedAt);
  const last = sorted[sorted.length - 1];
  if (!last) return { from: now - 3600_000, to: now, label: 'last hour (no runs recorded)' };
  let start = last.startedAt;
  let batchEnd = runEnd(last, now);
  for (let i = sorted.length - 2; i >= 0; i--) {
    const r = sorted[i]!;
    if (start - runEnd(r, now) > batchGapMs) break;
    start = Math.min(start, r.startedAt);
  }
  for (const r of sorted) if (r.startedAt >= start) batchEnd = Math.max(batchEnd, runEnd(r, now));
  const pad = Math.max(1000, (batchEnd - start) * 0.03);
  return { from: start - pad, to: batchEnd + pad, label: 'last run' };
}

function runEnd(r: RunRecord, now: number): number {
  return r.endedAt ?? Math.max(now, r.startedAt);
}

export interface TimelineOptions {
  readonly targets: readonly string[];
  readonly maxConcurrent: number;
  readonly now: number;
  readonly width?: number;
}

const stepColor: Record<SpanKind, string> = {
  wait: '#d9d9d9',
  stop: '#f0a35e',
  dump: '#d9534f',
  start: '#f0a35e',
  compress: '#8e6bbf',
  upload: '#3b82c4',
  manifest: '#2a9d8f',
  verify: '#3c9a4a',
  retention: '#9aa5b1',
  backoff: '#ffe08a',
};

const stepLabel: Record<SpanKind, string> = {
  wait: 'waiting (lock, fleet slot)',
  stop: 'stopping services',
  dump: 'dump',
  start: 'starting services',
  compress: 'compress',
  upload: 'upload',
  manifest: 'manifest',
  verify: 'verify (restore drill)',
  retention: 'retention',
  backoff: 'upload retry backoff',
};

/** 1-2-5 steps of seconds to days: the tick interval that gives about `want` ticks. */
function tickStep(spanMs: number, want: number): number {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((s) => s * 1000);
  return steps.find((s) => spanMs / s <= want) ?? 86400_000;
}

function clock(ms: number, step: number): string {
  const iso = new Date(ms).toISOString();
  return step < 60_000 ? iso.slice(11, 19) : iso.slice(11, 16);
}

/** Where each window overlaps another: the fleet row's count of quiesced appliances over time. */
export function concurrency(windows: readonly { start: number; end: number }[]): { at: number; count: number }[] {
  const edges = windows.flatMap((w) => [{ at: w.start, d: 1 }, { at: w.end, d: -1 }]).sort((a, b) => a.at - b.at || a.d - b.d);
  const out: { at: number; count: number }[] = [];
  let count = 0;
  for (const e of edges) {
    count += e.d;
    const last = out[out.length - 1];
    if (last && last.at === e.at) out[out.length - 1] = { at: e.at, count };
    else out.push({ at: e.at, count });
  }
  return out;
}

export function renderTimelineSvg(runs: readonly RunRecord[], window: TimelineWindow, options: TimelineOptions): string {
  const { now } = options;
  const width = options.width ?? 1100;
  const labelW = 110;
  const rowH = 44;
  const top = 28;
  const fleetH = 34;
  const plotW = width - labelW - 10;
  const span = Math.max(1, window.to - window.from);
  const x = (t: number): number => labelW + ((Math.min(Math.max(t, window.from), window.to) - window.from) / span) * plotW;
  const names = [...options.targets];
  for (const r of runs) if (!names.includes(r.target)) names.push(r.target);
  const height = top + fleetH + names.length * rowH + 24;
  const parts: string[] = [];
  const esc = escapeHtml;

  // Time axis: ticks and grid lines.
  const step = tickStep(span, 10);
  for (let t = Math.ceil(window.from / step) * step; t <= window.to; t += step) {
    const tx = x(t).toFixed(1);
    parts.push(`<line x1="${tx}" x2="${tx}" y1="${top - 4}" y2="${height - 20}" class="grid"/>`, `<text x="${tx}" y="${top - 8}" class="tick" text-anchor="middle">${clock(t, step)}</text>`);
  }

  // The fleet row: how many appliances were quiesced at once, against the limit.
  const visible = runs.filter((r) => r.startedAt < window.to && runEnd(r, now) > window.from);
  const windows = visible.flatMap((r) => {
    const w = runSpans(r, now).window;
    return w ? [{ target: r.target, runId: r.runId, ...w }] : [];
  });
  const steps = concurrency(windows);
  const peak = steps.reduce((m, s) => Math.max(m, s.count), 0);
  const scaleMax = Math.max(options.maxConcurrent, peak, 1);
  const fy = (n: number): number => top + fleetH - 6 - (n / scaleMax) * (fleetH - 12);
  parts.push(`<text x="4" y="${top + fleetH / 2 + 4}" class="label">fleet</text>`);
  let path = `M${x(window.from).toFixed(1)},${fy(0).toFixed(1)}`;
  let level = 0;
  for (const s of steps) {
    path += ` H${x(s.at).toFixed(1)} V${fy(s.count).toFixed(1)}`;
    level = s.count;
  }
  path += ` H${x(window.to).toFixed(1)}`;
  void level;
  parts.push(
    `<line x1="${labelW}" x2="${labelW + plotW}" y1="${fy(options.maxConcurrent).toFixed(1)}" y2="${fy(options.maxConcurrent).toFixed(1)}" class="limit"/>`,
    `<text x="${labelW + plotW - 2}" y="${(fy(options.maxConcurrent) - 2).toFixed(1)}" class="tick" text-anchor="end">limit ${options.maxConcurrent}</text>`,
    `<path d="${path}" class="fleet${peak > options.maxConcurrent ? ' over' : ''}" data-peak="${peak}" data-limit="${options.maxConcurrent}"/>`,
  );

  names.forEach((name, i) => {
    const y = top + fleetH + i * rowH;
    parts.push(`<g class="row" data-target="${esc(name)}">`, `<line x1="0" x2="${width}" y1="${y}" y2="${y}" class="sep"/>`, `<text x="4" y="${y + rowH / 2 + 4}" class="label">${esc(name)}</text>`);
    for (const r of visible.filter((v) => v.target === name)) {
      const s = runSpans(r, now);
      const attempt = r.maxAttempts > 1 ? ` attempt ${r.attempt}/${r.maxAttempts}` : '';
      for (const st of s.steps) {
        const x1 = x(st.start);
        const w = Math.max(1, x(st.end) - x1);
        const title = `${name}${attempt}: ${stepLabel[st.kind]}${st.artifact ? ` ${st.artifact}` : ''}, ${new Date(st.start).toISOString().slice(11, 19)} for ${formatDuration(st.end - st.start)}${st.open ? ' (running)' : ''}`;
        parts.push(`<rect x="${x1.toFixed(1)}" y="${y + 22}" width="${w.toFixed(1)}" height="14" fill="${stepColor[st.kind]}" class="step ${st.kind}" data-step="${st.kind}"><title>${esc(title)}</title></rect>`);
      }
      if (s.window) {
        const x1 = x(s.window.start);
        const w = Math.max(1, x(s.window.end) - x1);
        const title = `${name}: services stopped ${new Date(s.window.start).toISOString().slice(11, 19)} for ${formatDuration(s.window.end - s.window.start)}${s.window.open ? ' (still stopped)' : ''}`;
        parts.push(
          `<rect x="${x1.toFixed(1)}" y="${y + 6}" width="${w.toFixed(1)}" height="12" class="window${s.window.open ? ' open' : ''}" data-target="${esc(name)}" data-run="${esc(r.runId)}" data-start="${s.window.start}" data-end="${s.window.end}"><title>${esc(title)}</title></rect>`,
        );
      }
      if (r.outcome === 'failed' || r.outcome === 'retrying') {
        const ex = x(s.end);
        const what = r.outcome === 'failed' ? 'FAILED' : `failed, retried (attempt ${r.attempt + 1} of ${r.maxAttempts} follows)`;
        const title = `${name}${attempt}: ${what}${r.error ? `: ${r.error.code} ${r.error.message}` : ''}`;
        parts.push(`<g class="mark ${r.outcome}" data-target="${esc(name)}"><path d="M${(ex - 5).toFixed(1)},${y + 24} l10,10 m0,-10 l-10,10" class="${r.outcome === 'failed' ? 'fail' : 'retry'}"/><title>${esc(title)}</title></g>`);
      }
      for (const m of r.marks.filter((mk) => mk.step === 'upload-retry')) {
        parts.push(`<g class="mark upload-retry"><circle cx="${x(m.at).toFixed(1)}" cy="${y + 40}" r="3" class="retry"/><title>${esc(`${name}: upload failed at ${new Date(m.at).toISOString().slice(11, 19)}, retried from the spool`)}</title></g>`);
      }
      if (r.outcome === 'ok' && r.verify) {
        parts.push(`<text x="${(x(s.end) + 3).toFixed(1)}" y="${y + 34}" class="${r.verify.ok ? 'vok' : 'vbad'}">${r.verify.ok ? '✓' : '✗ verify'}</text>`);
      }
    }
    parts.push('</g>');
  });

  const style = `
.grid{stroke:#eee}.sep{stroke:#ddd}.tick{font:11px system-ui,sans-serif;fill:#666}.label{font:12px system-ui,sans-serif;fill:#222}
.window{fill:#c0392b;fill-opacity:.85}.window.open{fill-opacity:.5;stroke:#c0392b;stroke-dasharray:3 2}
.fleet{fill:none;stroke:#c0392b;stroke-width:1.5}.fleet.over{stroke:#000;stroke-width:2.5}.limit{stroke:#555;stroke-dasharray:4 3}
.fail{stroke:#a00;stroke-width:2.5}.retry{stroke:#e08e0b;fill:#e08e0b;stroke-width:2.5}.vok{fill:#176c2a;font:12px system-ui}.vbad{fill:#a00;font:12px system-ui}`;
  return `<svg xmlns="http://www.w3.org/2000/svg" id="timeline-svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" data-from="${window.from}" data-to="${window.to}" data-max-concurrent="${options.maxConcurrent}" data-peak="${peak}" role="img" aria-label="${esc(`timeline: ${window.label}`)}"><style>${style}</style>${parts.join('')}</svg>`;
}

/** The legend under the picture, as HTML. */
export function timelineLegend(): string {
  const items = (Object.keys(stepColor) as SpanKind[]).map((k) => `<span class="key"><i style="background:${stepColor[k]}"></i>${escapeHtml(stepLabel[k])}</span>`);
  return `<span class="key"><i style="background:#c0392b"></i>quiesce window (services stopped)</span>${items.join('')}<span class="key">✕ failed (orange: retried)</span><span class="key">● upload retried</span><span class="key">fleet: appliances quiesced at once, dashed line the limit</span>`;
}
