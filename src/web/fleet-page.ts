import { formatBytes, formatDuration } from '../cli/progress.ts';
import type { FleetRow, FleetView } from './fleet-view.ts';
import { html, raw, type RawHtml } from './html.ts';

/**
 * The fleet page: server-rendered, no build step and no external assets. Every 2 s a small
 * script fetches /api/fleet, whose `html` fields are rendered here too, so there is one
 * rendering of a row, not a server one and a browser one that drift apart.
 */
export interface FleetFragments {
  readonly rows: string;
  readonly lease: string;
  readonly queues: string;
  readonly summary: string;
}

export function renderFleetFragments(view: FleetView): FleetFragments {
  return {
    rows: view.targets.map((t) => renderRow(t, view).html).join('\n'),
    lease: renderLease(view).html,
    queues: renderQueues(view).html,
    summary: renderSummary(view).html,
  };
}

function renderRow(t: FleetRow, view: FleetView): RawHtml {
  const g = t.lastGood;
  const failing = t.lastFailure?.current === true;
  const classes = [t.stale ? 'stale' : '', failing ? 'failing' : ''].filter(Boolean).join(' ');
  return html`<tr data-target="${t.name}" class="${classes}">
  <td class="name">${t.name}</td>
  <td class="last-good">${g ? html`<span class="id">${g.id}</span><br><time datetime="${g.at}">${g.at.slice(0, 19).replace('T', ' ')} UTC</time>` : raw('<span class="never">never</span>')}</td>
  <td class="age" title="${t.stale ? `older than ${view.staleHours} h` : ''}">${g ? formatDuration(g.ageSeconds * 1000) : '-'}</td>
  <td class="size">${g ? html`${formatBytes(g.bytes)}<br><small>${formatBytes(g.rawBytes)} raw</small>` : '-'}</td>
  <td class="downtime">${g ? formatDuration(g.quiesceMs) : '-'}${g ? html`<br><small>run ${formatDuration(g.durationMs)}</small>` : ''}</td>
  <td class="step">${renderStep(t)}</td>
  <td class="failure">${t.lastFailure ? html`<span class="code">${t.lastFailure.code}</span> <small>${t.lastFailure.at.slice(0, 19).replace('T', ' ')}${t.lastFailure.current ? '' : ' (before the last good backup)'}</small><br><span class="reason">${t.lastFailure.message}</span>` : '-'}</td>
  <td class="next-run">${t.nextRun ? t.nextRun.slice(0, 16).replace('T', ' ') : '-'}</td>
  <td class="verify">${t.lastVerify ? html`<span class="${t.lastVerify.ok ? 'ok' : 'bad'}">${t.lastVerify.ok ? 'ok' : 'FAILED'}</span> <small>${t.lastVerify.id}</small><br><small>${t.lastVerify.message}</small>` : '-'}</td>
  <td class="counts"><small>${t.counts.successes} ok / ${t.counts.failures} failed / ${t.counts.retries} retried</small></td>
</tr>`;
}

function renderStep(t: FleetRow): RawHtml | string {
  const s = t.step;
  if (!s) return 'idle';
  const bytes = s.bytes === undefined ? '' : ` ${formatBytes(s.bytes)}${s.totalBytes ? ` of ${formatBytes(s.totalBytes)}` : ''}`;
  return html`<strong>${s.step}</strong>${s.artifact ? ` ${s.artifact}` : ''}${bytes}${s.holder ? html`<br><small>${s.holder}</small>` : ''}`;
}

function renderLease(view: FleetView): RawHtml {
  if (view.lease.length === 0) return html`<span class="free">free: no appliance is quiesced</span>`;
  return html`${view.lease.map(
    (l) =>
      html`<span class="holder${l.expired ? ' expired' : ''}"><strong>${l.target}</strong> quiesced by ${l.holder} since ${l.since.slice(11, 19)} UTC${l.why ? html` <em class="why">(${l.why})</em>` : l.expired ? ' (EXPIRED: the watchdog is restarting its services)' : ''}</span> `,
  )}`;
}

function renderQueues(view: FleetView): RawHtml {
  return html`${view.queues.map((q, i) => html`${i > 0 ? '; ' : ''}<span class="queue">${q.queue}: ${q.waiting} waiting, ${q.active} active, ${q.delayed} delayed, ${q.failed} failed</span>`)}`;
}

function renderSummary(view: FleetView): RawHtml {
  const stale = view.targets.filter((t) => t.stale).length;
  const failing = view.targets.filter((t) => t.lastFailure?.current).length;
  return html`${view.targets.length} appliances, ${stale} without a good backup in the last ${view.staleHours} h, ${failing} failing. Updated ${view.generatedAt.slice(11, 19)} UTC.`;
}

const style = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:0 0 .3em}
table{border-collapse:collapse;width:100%;margin-top:1em}
th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4;font-weight:600}
tr.stale td.age,tr.stale td.last-good{background:#fff3cd;color:#7a4b00;font-weight:600}
tr.failing td.failure{background:#f8d7da;color:#721c24}
.reason{font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap;word-break:break-word}
.never{color:#a00;font-weight:600}
.ok{color:#176c2a;font-weight:600}.bad{color:#a00;font-weight:600}
.holder.expired{color:#a00}
#bar{display:flex;gap:1.5em;flex-wrap:wrap}
#refresh{color:#888}
small{color:#666}
`;

/** The whole page. `nonce` allows the one inline script (the response's CSP forbids any other). */
export function renderFleetPage(view: FleetView, options: { nonce: string; refreshMs: number }): string {
  const f = renderFleetFragments(view);
  const script = `
(function(){
  var rows=document.getElementById('rows'),lease=document.getElementById('lease'),queues=document.getElementById('queues'),
      summary=document.getElementById('summary'),status=document.getElementById('refresh');
  function tick(){
    fetch('api/fleet',{credentials:'same-origin',cache:'no-store'}).then(function(r){
      if(!r.ok) throw new Error('HTTP '+r.status);
      return r.json();
    }).then(function(d){
      rows.innerHTML=d.html.rows;lease.innerHTML=d.html.lease;queues.innerHTML=d.html.queues;summary.innerHTML=d.html.summary;
      status.textContent='live';
    }).catch(function(e){status.textContent='refresh failed: '+e.message;})
    .then(function(){setTimeout(tick,${options.refreshMs});});
  }
  setTimeout(tick,${options.refreshMs});
})();`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vcsa-backup: fleet</title>
<style>${style}</style>
</head>
<body>
<h1>vcsa-backup fleet</h1>
<div id="bar"><span id="summary">${f.summary}</span><a href="queues/">queues (bull-board)</a><a href="metrics">metrics</a><span id="refresh"></span></div>
<p>Fleet quiesce lease: <span id="lease">${f.lease}</span></p>
<p>Queues: <span id="queues">${f.queues}</span></p>
<table>
<thead><tr><th>Appliance</th><th>Last good backup</th><th>Age</th><th>Size</th><th>Downtime</th><th>Now</th><th>Last failure</th><th>Next run (UTC)</th><th>Last verify</th><th>Counts</th></tr></thead>
<tbody id="rows">
${f.rows}
</tbody>
</table>
<script nonce="${options.nonce}">${script}</script>
</body>
</html>
`;
}
