import { formatBytes, formatDuration } from '../format.ts';
import type { LastVerify } from '../state/fleet-state.ts';
import type { SizeDrop } from '../state/size-drop.ts';
import { renderChart } from './charts.ts';
import type { FleetRow } from './fleet-view.ts';
import { escapeHtml, html, raw, type RawHtml } from './html.ts';

/**
 * The timeline and per-appliance pages: server-rendered like the fleet page, one nonce'd inline
 * script each (the response's CSP forbids any other), relative links so the dashboard works
 * behind a reverse proxy's path prefix. `root` is the path back to the dashboard's root.
 */
const style = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.2em 0 .4em}
nav{display:flex;gap:1.2em;flex-wrap:wrap;margin-bottom:.8em}nav a{color:#1d4f91}
table{border-collapse:collapse;width:100%;margin-top:.6em}
th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4;font-weight:600}
tr.size-drop td{background:#fff3cd}tr.size-drop td.size{color:#a00;font-weight:600}
code.cmd{font:12px ui-monospace,monospace;background:#f4f4f4;padding:.15em .3em;user-select:all;word-break:break-all}
.ok{color:#176c2a;font-weight:600}.bad{color:#a00;font-weight:600}small{color:#666}
.charts{display:flex;flex-wrap:wrap;gap:1em}
.legend{display:flex;flex-wrap:wrap;gap:.4em 1.2em;font-size:12px;color:#444;margin:.4em 0}.key i{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle}
.actions button{margin-right:.6em}#confirm{border:1px solid #c0392b;background:#fff6f5;padding:.6em;margin:.6em 0}
#progress{font-family:ui-monospace,monospace;font-size:13px;margin:.6em 0;white-space:pre-wrap}
.alert{background:#f8d7da;color:#721c24;padding:.5em;margin:.6em 0}
.warn{background:#fff3cd;color:#7a4b00;padding:.5em;margin:.6em 0}
`;

export function nav(root: string, targets: readonly string[]): RawHtml {
  return html`<nav><a href="${root}">fleet</a><a href="${root}timeline">timeline</a>${targets.map((t) => html`<a href="${root}appliance/${encodeURIComponent(t)}">${t}</a>`)}<a href="${root}queues/">queues</a><a href="${root}metrics">metrics</a></nav>`;
}

export function layout(options: { title: string; root: string; targets: readonly string[]; body: RawHtml | string; nonce: string; script?: string; csrf?: string }): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${options.csrf ? `<meta name="csrf-token" content="${escapeHtml(options.csrf)}">` : ''}
<title>${escapeHtml(options.title)}</title>
<style>${style}</style>
</head>
<body>
${nav(options.root, options.targets).html}
${String(options.body)}
${options.script ? `<script nonce="${escapeHtml(options.nonce)}">${options.script}</script>` : ''}
</body>
</html>
`;
}

export function renderTimelinePage(options: { svg: string; legend: string; label: string; night: string; root: string; targets: readonly string[]; nonce: string; svgUrl: string; live: boolean; peak: number; maxConcurrent: number }): string {
  const body = html`<h1>The night: ${options.label}</h1>
<form method="get" action="${options.root}timeline"><label>Night (12:00–12:00 UTC) <input type="date" name="night" value="${options.night}"></label> <button type="submit">show</button> <a href="${options.root}timeline">last run</a></form>
<p id="fleet-limit">At most <strong>${options.peak}</strong> appliance(s) quiesced at once; the limit (quiesce.maxConcurrent) is ${options.maxConcurrent}.${options.peak > options.maxConcurrent ? raw(' <span class="bad">OVER THE LIMIT</span>') : ''}</p>
<div class="legend">${raw(options.legend)}</div>
<div id="timeline">${raw(options.svg)}</div>
<p><small>Hover a bar for its times. Times are UTC.</small> <span id="refresh"></span></p>`;
  // The last run is refreshed while it may still be going on; a chosen night is history.
  const script = options.live
    ? `(function(){var box=document.getElementById('timeline'),status=document.getElementById('refresh');
function tick(){fetch(${JSON.stringify(options.svgUrl)},{credentials:'same-origin',cache:'no-store'}).then(function(r){if(!r.ok)throw new Error('HTTP '+r.status);return r.text();})
.then(function(t){box.innerHTML=t;status.textContent='live';}).catch(function(e){status.textContent='refresh failed: '+e.message;}).then(function(){setTimeout(tick,3000);});}
setTimeout(tick,3000);})();`
    : undefined;
  return layout({ title: 'vcsa-backup: timeline', root: options.root, targets: options.targets, body, nonce: options.nonce, ...(script ? { script } : {}) });
}

export interface ApplianceBackup {
  readonly id: string;
  readonly at: number;
  readonly completedAt: number;
  readonly bytes: number;
  readonly rawBytes: number;
  readonly quiesceMs: number | null;
  readonly durationMs: number;
  readonly encrypted: boolean;
  readonly verify: LastVerify | null;
  readonly sizeDrop: SizeDrop | null;
}

export interface AppliancePageModel {
  readonly target: string;
  readonly configPath: string;
  readonly row: FleetRow | null;
  readonly backups: readonly ApplianceBackup[];
  /** Why the backup list could not be read (S3 unreachable…). */
  readonly listError: string | null;
  readonly failedJobs: readonly { readonly id: string; readonly at: string; readonly reason: string }[];
  readonly readOnly: boolean;
  readonly sizeDropRatio: number;
}

/** POSIX shell quoting, only where needed: the command is for copy and paste. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function restoreCommand(configPath: string, target: string, id: string): string {
  return ['vcsa-backup', 'restore', '--config', configPath, '--target', target, '--backup', id].map(shellQuote).join(' ');
}

export function renderApplianceBody(m: AppliancePageModel): RawHtml {
  const pct = (x: number): string => `${Math.round(x * 100)}%`;
  const points = (value: (b: ApplianceBackup) => number | null) =>
    m.backups.flatMap((b) => {
      const v = value(b);
      return v === null ? [] : [{ id: b.id, at: b.at, value: v, highlight: b.sizeDrop !== null }];
    });
  const latestDrop = m.backups[0]?.sizeDrop ?? null;
  const charts = [
    renderChart(points((b) => b.bytes), { title: 'stored (compressed) size', format: formatBytes, name: 'bytes' }),
    renderChart(points((b) => b.rawBytes), { title: 'raw dump size', format: formatBytes, name: 'raw-bytes' }),
    renderChart(points((b) => b.quiesceMs), { title: 'quiesce window (services stopped)', format: formatDuration, name: 'quiesce' }),
    renderChart(points((b) => b.durationMs), { title: 'total duration', format: formatDuration, name: 'duration' }),
  ];
  const rows = m.backups.map(
    (b) => html`<tr data-backup="${b.id}" class="${b.sizeDrop ? 'size-drop' : ''}">
<td class="id">${b.id}</td>
<td><time datetime="${new Date(b.at).toISOString()}">${new Date(b.at).toISOString().slice(0, 19).replace('T', ' ')}</time></td>
<td class="size">${formatBytes(b.bytes)}${b.sizeDrop ? html`<br><small>${pct(b.sizeDrop.ratio)} of ${b.sizeDrop.previousId}</small>` : ''}${b.encrypted ? raw('<br><small>encrypted</small>') : ''}</td>
<td>${formatBytes(b.rawBytes)}</td>
<td>${b.quiesceMs === null ? '-' : formatDuration(b.quiesceMs)}</td>
<td>${formatDuration(b.durationMs)}</td>
<td class="verify">${b.verify ? html`<span class="${b.verify.ok ? 'ok' : 'bad'}">${b.verify.ok ? 'ok' : 'FAILED'}</span> <small>${b.verify.at.slice(0, 16).replace('T', ' ')}</small><br><small>${b.verify.message}</small>` : raw('<small>not verified</small>')}</td>
<td><code class="cmd">${restoreCommand(m.configPath, m.target, b.id)}</code></td>
</tr>`,
  );
  const r = m.row;
  const actions = m.readOnly
    ? raw('')
    : html`<div class="actions" id="actions">
<button type="button" data-action="backup">Run backup now</button>
<button type="button" data-action="verify"${m.backups.length === 0 ? raw(' disabled') : ''}>Run verify now</button>
${m.failedJobs.map((j) => html`<button type="button" data-action="retry" data-job="${j.id}">Retry failed job ${j.id}</button>`)}
</div>
<div id="confirm" hidden><span id="confirm-text"></span> <button type="button" id="confirm-yes">Confirm</button> <button type="button" id="confirm-no">Cancel</button></div>
<div id="progress"></div>`;
  return html`<h1>${m.target}</h1>
<p id="now">${r ? html`Last good backup: ${r.lastGood ? html`<strong>${r.lastGood.id}</strong> (${formatDuration(r.lastGood.ageSeconds * 1000)} ago)` : raw('<span class="bad">never</span>')}. Now: <strong id="step">${r.step ? `${r.step.step}${r.step.artifact ? ` ${r.step.artifact}` : ''}` : 'idle'}</strong>.${r.lastFailure?.current ? html` <span class="bad">Failing: ${r.lastFailure.code}</span> <small>${r.lastFailure.message}</small>` : ''}` : ''}</p>
${latestDrop ? html`<div class="warn" id="size-drop">The newest backup ${latestDrop.id} is ${pct(latestDrop.ratio)} of the size of the one before (${latestDrop.previousId}), under ${pct(m.sizeDropRatio)} (retention.minSizeRatio): a broken dump looks like this. Verify it before relying on it; retention does not prune on its account.</div>` : ''}
${actions}
${m.listError ? html`<div class="alert">Backups could not be listed: ${m.listError}</div>` : ''}
<h2>History</h2>
<div class="charts">${raw(charts.join(''))}</div>
<h2>Backups (${m.backups.length})</h2>
<table id="backups"><thead><tr><th>Backup id</th><th>Taken (UTC)</th><th>Stored</th><th>Raw</th><th>Quiesce window</th><th>Duration</th><th>Verify</th><th>Restore</th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

/** The page's script: actions with a confirmation, then live progress until the job ends. */
export function applianceScript(target: string): string {
  return `(function(){
var token=(document.querySelector('meta[name="csrf-token"]')||{}).content||'';
var box=document.getElementById('confirm'),text=document.getElementById('confirm-text'),progress=document.getElementById('progress');
var target=${JSON.stringify(target)},pending=null;
if(!box)return;
function say(t){progress.textContent=t;}
function post(path,body){return fetch('../actions/'+path,{method:'POST',credentials:'same-origin',headers:{'content-type':'application/json','x-csrf-token':token},body:JSON.stringify(body)})
 .then(function(r){return r.json().then(function(d){if(!r.ok)throw new Error(d.error||('HTTP '+r.status));return d;});});}
function follow(url,label){
 fetch(url,{credentials:'same-origin',cache:'no-store'}).then(function(r){return r.json();}).then(function(d){
  var p=d.progress&&d.progress.step?(' '+d.progress.step+(d.progress.artifact?' '+d.progress.artifact:'')+(d.progress.bytes!==undefined?' '+d.progress.bytes+' bytes':'')):'';
  say(label+': '+d.state+p+(d.message?'\\n'+d.message:''));
  if(d.state==='completed'||d.state==='ok'){say(label+': done'+(d.message?' \\u2014 '+d.message:'')+'. Reloading\\u2026');setTimeout(function(){location.reload();},800);}
  else if(d.state==='failed'){say(label+': FAILED'+(d.message?' \\u2014 '+d.message:''));}
  else setTimeout(function(){follow(url,label);},1000);
 }).catch(function(e){say(label+': '+e.message);setTimeout(function(){follow(url,label);},2000);});
}
var what={backup:function(){return 'Back up '+target+' now? Its services are stopped for the dump.';},
 verify:function(){return 'Verify the newest backup of '+target+' now (a restore into a scratch database)?';},
 retry:function(b){return 'Retry failed job '+b.getAttribute('data-job')+'?';}};
document.getElementById('actions').addEventListener('click',function(e){
 var b=e.target.closest('button[data-action]');if(!b)return;
 pending=b;text.textContent=what[b.getAttribute('data-action')](b);box.hidden=false;});
document.getElementById('confirm-no').addEventListener('click',function(){pending=null;box.hidden=true;});
document.getElementById('confirm-yes').addEventListener('click',function(){
 var b=pending;pending=null;box.hidden=true;if(!b)return;
 var action=b.getAttribute('data-action');say(action+': sending\\u2026');
 var body=action==='retry'?{jobId:b.getAttribute('data-job')}:{target:target};
 post(action,body).then(function(d){
  if(action==='verify')follow('../api/verify-task?id='+encodeURIComponent(d.taskId),'verify');
  else follow('../api/job?id='+encodeURIComponent(d.jobId),(d.alreadyQueued?'already queued: following '+d.jobId:'backup '+d.jobId));
 }).catch(function(e){say(action+': '+e.message);});
});
})();`;
}
