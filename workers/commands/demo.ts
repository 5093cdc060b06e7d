import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { exitCodes, intOption, stringOption, type CliCommand, type CliContext } from '../../src/cli/command.ts';
import { formatBytes, formatDuration } from '../../src/format.ts';
import { ProgressPrinter } from '../../src/cli/progress.ts';
import { loadConfig, type Config } from '../../src/config/load.ts';
import type { ProgressEvent } from '../../src/backup/progress.ts';
import { allServicesRunningAtEnd, findOverlaps, maxConcurrentQuiesced, quiesceIntervals, readAudit } from '../../src/sim/audit.ts';
import { startSimFleet, type SimFleet } from '../../src/sim/fleet.ts';
import type { BackupJobResult } from '../../src/fleet/backup-job.ts';
import { enqueueBackups, waitForJobs, type JobOutcome } from '../producer.ts';
import { removeFleetKeys } from '../queues.ts';
import { connectRedis } from '../../src/redis/connection.ts';
import { runDrill } from '../drill.ts';

const binPath = fileURLToPath(new URL('../../bin/vcsa-backup.js', import.meta.url));

export const command: CliCommand = {
  name: 'demo',
  summary:
    'The main job end to end on embedded defaults: a simulated fleet of VCSA 5.5 appliances, an embedded S3 endpoint, Redis from REDIS_URL ' +
    '(default redis://127.0.0.1:6379), two worker processes. Backs the fleet up, shows progress, prints a summary, runs a restore drill, ' +
    'and exits 0 only if every invariant held (read from the appliances\' audit log).',
  usage: '[--count N] [--workers N] [--out DIR] [--keep]',
  // The demo talks to people; its workers' JSON logs go to DIR/worker-N.log.
  defaultLogLevel: 'warn',
  options: { count: { type: 'string' }, workers: { type: 'string' }, out: { type: 'string' }, keep: { type: 'boolean', default: false } },
  async run(ctx) {
    // As `simulate`: each appliance is two daemons and two databases on this machine.
    const count = intOption(ctx.values, 'count', 1, 50) ?? 3;
    const workerCount = intOption(ctx.values, 'workers', 1, 16) ?? 2;
    const outDir = stringOption(ctx.values, 'out') ?? (await mkdtemp(join(tmpdir(), 'vcsa-backup-demo-')));
    const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
    const prefix = `vcsa-demo-${Date.now().toString(36)}`;
    ctx.say(`demo: ${count} simulated VCSA 5.5 appliances, ${workerCount} workers, Redis ${redisUrl}, files in ${outDir}${ctx.values['keep'] === true ? '' : ' (removed at the end; --keep keeps them)'}`);

    let fleet: SimFleet | undefined;
    const workers: ChildProcess[] = [];
    let config: Config | undefined;
    try {
      // With --keep the appliances outlive the demo, so their daemons must not follow it out.
      fleet = await startSimFleet({ count, outDir, redisUrl, redisPrefix: prefix, ...(ctx.values['keep'] === true ? { ownerPid: null } : {}) });
      config = await tuneForDemo(fleet.configPath);
      ctx.say(`demo: fleet.yaml at ${fleet.configPath}; S3 endpoint ${fleet.sim.s3.endpoint}, bucket ${fleet.sim.s3.bucket}`);
      for (let i = 1; i <= workerCount; i++) workers.push(startWorkerProcess(fleet.configPath, join(outDir, `worker-${i}.log`), i));

      const outcomes = await backUpFleet(ctx, config);
      const ok = outcomes.filter((o): o is Extract<JobOutcome, { ok: true }> => o.ok);
      printSummary(ctx, config, outcomes);

      const checks: { name: string; ok: boolean; detail: string }[] = [];
      checks.push({ name: 'every appliance backed up', ok: ok.length === count, detail: `${ok.length} of ${count}` });

      // The backups' audit lines end here; the drill's restore quiesces one appliance again.
      const backupsEndedAt = Date.now();
      const first = ok[0];
      if (first) {
        ctx.say(`\ndemo: restore drill on ${first.target} ${first.result.id}: verify into scratch databases, then restore onto the appliance`);
        for (const step of await runDrill(ctx, config, first.result)) checks.push({ name: `drill: ${step.name}`, ok: step.ok, detail: step.detail });
      }

      await stopWorkers(workers);
      const audit = await readAudit(fleet.auditLog);
      const backupAudit = audit.filter((e) => e.ts <= backupsEndedAt);
      const intervals = quiesceIntervals(audit);
      const overlaps = findOverlaps(intervals);
      const peak = maxConcurrentQuiesced(intervals);
      checks.push({
        name: 'invariant 1: at most quiesce.maxConcurrent appliances quiesced at once',
        ok: overlaps.length === 0 || peak <= config.quiesce.maxConcurrent,
        detail: `${intervals.length} quiesce windows in the audit log, at most ${peak} at once (limit ${config.quiesce.maxConcurrent})`,
      });
      const running = await Promise.all(fleet.appliances.map(async (a) => ({ name: a.name, up: await a.servicesRunning() })));
      checks.push({
        name: 'invariant 2: every stopped service was started again',
        ok: allServicesRunningAtEnd(audit) && running.every((r) => r.up),
        detail: running.map((r) => `${r.name} ${r.up ? 'running' : 'NOT RUNNING'}`).join(', '),
      });
      const perAppliance = new Map<string, number>();
      for (const i of quiesceIntervals(backupAudit)) perAppliance.set(i.appliance, (perAppliance.get(i.appliance) ?? 0) + 1);
      checks.push({
        name: 'invariant 4: each backup quiesced its appliance once',
        ok: [...perAppliance.values()].every((n) => n === 1),
        detail: [...perAppliance].map(([a, n]) => `${a} ${n}x`).join(', '),
      });

      ctx.say('');
      for (const c of checks) ctx.say(`${c.ok ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`);
      const allOk = checks.every((c) => c.ok);
      ctx.say(allOk ? '\ndemo: every invariant held.' : '\ndemo: FAILED; worker logs are in ' + outDir);
      if (ctx.json) ctx.out(JSON.stringify({ ok: allOk, checks, backups: ok.map((o) => o.result), failures: outcomes.filter((o) => !o.ok) }));
      return allOk ? exitCodes.ok : exitCodes.failed;
    } finally {
      await stopWorkers(workers);
      if (config) await cleanRedis(config).catch(() => undefined);
      if (fleet && ctx.values['keep'] !== true) await fleet.stop();
    }
  },
};

/** Short leases so a demo (and its watchdog) reacts in seconds, not minutes. */
async function tuneForDemo(configPath: string): Promise<Config> {
  const raw = parseYaml(await readFile(configPath, 'utf8')) as Record<string, Record<string, unknown>>;
  raw['quiesce'] = { ...(raw['quiesce'] ?? {}), leaseSeconds: 10, watchdogIntervalSeconds: 2, waitSeconds: 600 };
  raw['worker'] = { ...(raw['worker'] ?? {}), concurrency: 2, backoffSeconds: 2, lockSeconds: 15, stalledIntervalSeconds: 10 };
  await writeFile(configPath, stringifyYaml(raw));
  return loadConfig(configPath);
}

function startWorkerProcess(configPath: string, logPath: string, n: number): ChildProcess {
  const log = createWriteStream(logPath);
  const child = spawn(process.execPath, [binPath, 'worker', '--config', configPath], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, VCSA_BACKUP_WORKER: String(n) },
  });
  child.stderr?.pipe(log);
  return child;
}

async function stopWorkers(workers: ChildProcess[]): Promise<void> {
  await Promise.all(
    workers.map(async (w) => {
      if (w.exitCode !== null || w.signalCode !== null) return;
      const exited = once(w, 'exit');
      w.kill('SIGTERM');
      const timer = setTimeout(() => w.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }),
  );
}

async function backUpFleet(ctx: CliContext, config: Config): Promise<JobOutcome[]> {
  const redis = connectRedis(config.redis, 'command');
  try {
    const jobs = await enqueueBackups(config, redis, config.targets.map((t) => t.name), `demo${Date.now()}`);
    ctx.say(`demo: queued ${jobs.length} backups`);
    const progress = new ProgressPrinter(ctx.tty, ctx.say);
    const outcomes = await waitForJobs(config, redis, jobs, {
      signal: ctx.signal,
      pollMs: 500,
      onProgress: (_t, p) => {
        if (p && typeof p === 'object' && 'step' in p) progress.update(p as ProgressEvent);
      },
    });
    progress.done();
    return outcomes;
  } finally {
    redis.disconnect();
  }
}

function printSummary(ctx: CliContext, config: Config, outcomes: readonly JobOutcome[]): void {
  const rows = [['APPLIANCE', 'RESULT', 'DOWNTIME', 'SIZE (gz)', 'OBJECT']];
  for (const o of outcomes) {
    if (o.ok) {
      const r: BackupJobResult = o.result;
      r.artifacts.forEach((a, i) => rows.push(i === 0 ? [o.target, 'ok', formatDuration(r.quiesceMs), formatBytes(a.bytes), a.key] : ['', '', '', formatBytes(a.bytes), a.key]));
      rows.push(['', '', '', '', `${r.manifestKey} (written last)`]);
    } else {
      rows.push([o.target, `FAILED ${o.code}`, '-', '-', o.message]);
    }
  }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  ctx.say('');
  ctx.say(`backups in s3://${config.s3.bucket}:`);
  for (const r of rows) ctx.say(r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd());
}

/** The demo's Redis keys live under their own prefix; remove them all. */
async function cleanRedis(config: Config): Promise<void> {
  const redis = connectRedis(config.redis, 'command');
  try {
    await removeFleetKeys(redis, config.redis.prefix);
  } finally {
    redis.disconnect();
  }
}

