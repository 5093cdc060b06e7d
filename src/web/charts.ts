import { escapeHtml } from './html.ts';

/**
 * A small server-rendered SVG chart: one value per backup, oldest on the left, dots joined by a
 * line, highlighted dots in red. Enough for "is anything suddenly off"; Grafana has the rest.
 */
export interface ChartPoint {
  readonly id: string;
  readonly at: number;
  readonly value: number;
  readonly highlight?: boolean;
}

export function renderChart(points: readonly ChartPoint[], options: { title: string; format: (v: number) => string; name: string; width?: number; height?: number }): string {
  const width = options.width ?? 520;
  const height = options.height ?? 160;
  const left = 70;
  const right = 10;
  const top = 22;
  const bottom = 24;
  const esc = escapeHtml;
  const head = `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="${esc(options.name)}" data-points="${points.length}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(options.title)}">`;
  const title = `<text x="${left}" y="14" class="ct">${esc(options.title)}</text>`;
  if (points.length === 0) return `${head}${title}<text x="${left}" y="${height / 2}" class="cl">no backups yet</text></svg>`;
  const sorted = [...points].sort((a, b) => a.at - b.at);
  const max = Math.max(...sorted.map((p) => p.value), 0) || 1;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const px = (i: number): number => left + (sorted.length === 1 ? plotW / 2 : (i / (sorted.length - 1)) * plotW);
  const py = (v: number): number => top + plotH - (v / max) * plotH;
  const parts: string[] = [head, title];
  for (const f of [0, 0.5, 1]) {
    const y = py(max * f).toFixed(1);
    parts.push(`<line x1="${left}" x2="${width - right}" y1="${y}" y2="${y}" class="cg"/>`, `<text x="${left - 4}" y="${(Number(y) + 4).toFixed(1)}" class="cl" text-anchor="end">${esc(options.format(max * f))}</text>`);
  }
  const path = sorted.map((p, i) => `${i === 0 ? 'M' : 'L'}${px(i).toFixed(1)},${py(p.value).toFixed(1)}`).join(' ');
  parts.push(`<path d="${path}" class="cp"/>`);
  sorted.forEach((p, i) => {
    parts.push(`<circle cx="${px(i).toFixed(1)}" cy="${py(p.value).toFixed(1)}" r="${p.highlight ? 5 : 3}" class="${p.highlight ? 'dot hi' : 'dot'}" data-id="${esc(p.id)}"><title>${esc(`${p.id}: ${options.format(p.value)}`)}</title></circle>`);
  });
  const first = sorted[0]!;
  const last = sorted[sorted.length - 1]!;
  parts.push(`<text x="${left}" y="${height - 6}" class="cl">${esc(new Date(first.at).toISOString().slice(0, 16).replace('T', ' '))}</text>`);
  if (sorted.length > 1) parts.push(`<text x="${width - right}" y="${height - 6}" class="cl" text-anchor="end">${esc(new Date(last.at).toISOString().slice(0, 16).replace('T', ' '))}</text>`);
  parts.push('<style>.ct{font:600 12px system-ui,sans-serif}.cl{font:11px system-ui,sans-serif;fill:#666}.cg{stroke:#eee}.cp{fill:none;stroke:#3b82c4;stroke-width:1.5}.dot{fill:#3b82c4}.dot.hi{fill:#c0392b}</style></svg>');
  return parts.join('');
}
