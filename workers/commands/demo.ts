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
import type { NativeAppliance } from '../../src/sim/native-appliance.ts';
import { loopbackNativeSection, nativeTargets, startNativeAppliances } from '../../src/sim/native-fleet.ts';
import { verifyBackup } from '../../src/restore/verify.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import type { BackupJobResult } from '../../src/fleet/backup-job.ts';
import { enqueueBackups, waitForJobs, type JobOutcome } from '../producer.ts';
import { removeFleetKeys } from '../queues.ts';
import { connectRedis } from '../../src/redis/connection.ts';
import { runDrill } from '../drill.ts';

const binPath = fileURLToPath(new URL('../../bin/vcsa-backup.js', import.meta.url));

export const command: CliCommand = {
  name: 'demo',
  summary:
    'The main job end to end on embedded defaults: a simulated fleet of VCSA 5.5 appliances (plus one vCenter 8.0 appliance whose own file-based ' +
    'backup is received over SFTP: --native 0 leaves it out), an embedded S3 endpoint, Redis from REDIS_URL ' +
    '(default redis://127.0.0.1:6379), two worker processes. Backs the fleet up, shows progress, prints a summary, runs a restore drill, ' +
    'and exits 0 only if every invariant held (read from the appliances\' audit log).',
  usage: '[--count N] [--native N] [--workers N] [--out DIR] [--keep]',
  // The demo talks to people; its workers' JSON logs go to DIR/worker-N.log.
  defaultLogLevel: 'warn',
  options: { count: { type: 'string' }, native: { type: 'string' }, workers: { type: 'string' }, out: { type: 'string' }, keep: { type: 'boolean', default: false } },
  async run(ctx) {
    // As `simulate`: each appliance is two daemons and two databases on this machine.
    const count = intOption(ctx.values, 'count', 1, 50) ?? 3;
    const nativeCount = intOption(ctx.values, 'native', 0, 10) ?? 1;
    const workerCount = intOption(ctx.values, 'workers', 1, 16) ?? 2;
    const outDir = stringOption(ctx.values, 'out') ?? (await mkdtemp(join(tmpdir(), 'vcsa-backup-demo-')));
    const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
    const prefix = `vcsa-demo-${Date.now().toString(36)}`;
    ctx.say(`demo: ${count} simulated VCSA 5.5 appliances${nativeCount > 0 ? ` and ${nativeCount} vCenter 8.0 (vcsa-native)` : ''}, ${workerCount} workers, Redis ${redisUrl}, files in ${outDir}${ctx.values['keep'] === true ? '' : ' (removed at the end; --keep keeps them)'}`);

    let fleet: SimFleet | undefined;
    let natives: NativeAppliance[] = [];
    const workers: ChildProcess[] = [];
    let config: Config | undefined;
    try {
      // With --keep the appliances outlive the demo, so their daemons must not follow it out.
      fleet = await startSimFleet({ count, outDir, redisUrl, redisPrefix: prefix, ...(ctx.values['keep'] === true ? { ownerPid: null } : {}) });
      // The native appliances live in this process (with --keep too: they end with the demo).
      natives = nativeCount > 0 ? await startNativeAppliances(nativeCount, { archiveBytes: 256 * 1024 }) : [];
      config = await tuneForDemo(fleet.configPath, natives.length > 0 ? await nativeTargets(natives, join(outDir, 'secrets')) : []);
      ctx.say(`demo: fleet.yaml at ${fleet.configPath}; S3 endpoint ${fleet.sim.s3.endpoint}, bucket ${fleet.sim.s3.bucket}`);
      for (let i = 1; i <= workerCount; i++) workers.push(startWorkerProcess(fleet.configPath, join(outDir, `worker-${i}.log`), i));

      const outcomes = await backUpFleet(ctx, config);
      const ok = outcomes.filter((o): o is Extract<JobOutcome, { ok: true }> => o.ok);
      printSummary(ctx, config, outcomes);

      const checks: { name: string; ok: boolean; detail: string }[] = [];
      checks.push({ name: 'every appliance backed up', ok: ok.length === count + natives.length, detail: `${ok.length} of ${count + natives.length}` });
      if (natives.length > 0) checks.push(...(await nativeChecks(ctx, config, natives, ok)));

      // The backups' audit lines end here; the drill's restore quiesces one appliance again.
      const backupsEndedAt = Date.now();
      const first = ok.find((o) => !natives.some((n) => n.name === o.target));
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
      await Promise.allSettled(natives.map((n) => n.stop()));
      if (fleet && ctx.values['keep'] !== true) await fleet.stop();
    }
  },
};

/** Short leases so a demo (and its watchdog) reacts in seconds, not minutes; the native targets added. */
async function tuneForDemo(configPath: string, nativeTargetEntries: readonly Record<string, unknown>[]): Promise<Config> {
  const raw = parseYaml(await readFile(configPath, 'utf8')) as Record<string, Record<string, unknown>>;
  if (nativeTargetEntries.length > 0) {
    (raw as Record<string, unknown>)['targets'] = [...(raw['targets'] as unknown as unknown[]), ...nativeTargetEntries];
    raw['native'] = loopbackNativeSection({ pollSeconds: 1, leaseSeconds: 10 });
  }
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

/**
 * The native appliances' part of the demo: each one's own backup job succeeded, no two ran at
 * once beyond native.maxConcurrent, and each backup verifies (every object's sha256, and the
 * archive's own metadata read back: version, parts, file list).
 */
async function nativeChecks(ctx: CliContext, config: Config, natives: readonly NativeAppliance[], ok: readonly Extract<JobOutcome, { ok: true }>[]): Promise<{ name: string; ok: boolean; detail: string }[]> {
  const windows = natives.flatMap((n) => n.jobs.map((j) => ({ from: Date.parse(j.start_time), to: j.end_time ? Date.parse(j.end_time) : Date.now() })));
  const peak = Math.max(0, ...windows.map((w) => windows.filter((o) => o.from <= w.from && w.from < o.to).length));
  const store = createS3ObjectStore(config.s3, ctx.logger);
  const verified: string[] = [];
  try {
    for (const n of natives) {
      const o = ok.find((x) => x.target === n.name);
      if (!o) continue;
      const report = await verifyBackup({ config, target: n.name, backup: o.result.id, store, logger: ctx.logger, signal: ctx.signal }).catch(() => undefined);
      if (report?.ok) verified.push(n.name);
    }
  } finally {
    store.close();
  }
  return [
    {
      name: 'native: each appliance\'s own backup job succeeded',
      ok: natives.every((n) => n.jobs.length > 0 && n.jobs.every((j) => j.state === 'SUCCEEDED')),
      detail: natives.map((n) => `${n.name} ${n.jobs.map((j) => `${j.id} ${j.state}`).join(', ') || 'no job'}`).join('; '),
    },
    { name: 'native: at most native.maxConcurrent appliance jobs at once', ok: peak <= config.native.maxConcurrent, detail: `at most ${peak} at once (limit ${config.native.maxConcurrent})` },
    { name: 'native: backups verified (sha256, archive metadata read back)', ok: verified.length === natives.length, detail: `${verified.length} of ${natives.length}` },
  ];
}

function printSummary(ctx: CliContext, config: Config, outcomes: readonly JobOutcome[]): void {
  const rows = [['APPLIANCE', 'RESULT', 'DOWNTIME', 'SIZE (gz)', 'OBJECT']];
  for (const o of outcomes) {
    if (o.ok) {
      const r: BackupJobResult = o.result;
      const downtime = config.targets.some((t) => t.name === o.target && t.profile === 'vcsa-native') ? 'none (native)' : formatDuration(r.quiesceMs);
      r.artifacts.forEach((a, i) => rows.push(i === 0 ? [o.target, 'ok', downtime, formatBytes(a.bytes), a.key] : ['', '', '', formatBytes(a.bytes), a.key]));
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

