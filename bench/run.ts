/**
 * `npm run bench [-- --vcdb-mb N --fleet-mb N --rss-mib N --rounds N --schedulers N --appliances N --skip-fleet --only a,b --out FILE]`:
 * issue 11's goals measured end to end on simulated appliances with realistic VCDB data, each
 * figure a ratio against a baseline measured in the same run on the same data, medians of
 * `--rounds` runs (≥ 3). Writes BENCHMARKS.md (or --out). Not a test: nothing here asserts.
 *
 *   window    dump part of `backup`'s window             vs  the same pg_dump + backup.sh run alone
 *             whole window                               vs  the classic script (stop; dump > file; start)
 *   compress  compress + both sha256 (all cores)         vs  gzip -6 -c | tee >(sha256sum) > file
 *             compress + sha256 + upload + verify        vs  that shell pipeline + a plain multipart upload
 *   fleet     6 appliances, 2 workers, `run --wait`      vs  the classic sequential loop; vs Σ windows + one upload
 *             (S3 behind a link whose uplink makes an upload as long as a dump; and without it)
 *   memory    worker-path peak RSS (dump, gzip, upload)  vs  the 200 MiB goal
 *   schedule  1,000 job schedulers upserted              vs  the 5 s goal
 *   aliases   1,000 targets via anchors/aliases: load + schedule  vs  the same fleet written out
 *   overhead  200 tiny appliances, 2 workers: per-job time outside the steps and the lease wait,
 *             and the hand-over between windows   vs  the 100 ms goal (invariant 1 checked)
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { stringify as stringifyYaml } from 'yaml';
import { compressOnce } from '../src/backup/compress.ts';
import { readManifest } from '../src/catalog/catalog.ts';
import { loadConfig, parseConfig, type Config } from '../src/config/load.ts';
import { silentLogger } from '../src/log.ts';
import { createSimAppliance, type SimAppliance } from '../src/sim/appliance.ts';
import { auditReport, parseAudit, quiesceIntervals } from '../src/sim/audit.ts';
import { defaultPgBin } from '../src/sim/postgres.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../src/storage/embedded-s3.ts';
import { createS3ObjectStore } from '../src/storage/s3.ts';
import { syncSchedules } from '../workers/producer.ts';
import { backupQueueName, queueOptions, removeFleetKeys } from '../workers/queues.ts';
import { binPath, freePort, runCli, startFleetHarness, waitFor } from '../test/support/fleet.ts';
import { startPrivatePostgres } from './private-postgres.ts';
import { startThrottledLink } from './throttled-link.ts';

const { values: flags } = parseArgs({
  options: {
    'vcdb-mb': { type: 'string', default: '256' },
    'fleet-mb': { type: 'string', default: '64' },
    'rss-mib': { type: 'string', default: '512' },
    rounds: { type: 'string', default: '3' },
    schedulers: { type: 'string', default: '1000' },
    /** Appliances in the overhead section's fleet. */
    appliances: { type: 'string', default: '200' },
    /** The fleet section's uplink to S3 in MiB/s; default: calibrated so that upload time = dump time. */
    'uplink-mibps': { type: 'string' },
    'skip-fleet': { type: 'boolean', default: false },
    /** Only these sections (comma-separated: window,compress,memory,schedulers,aliases,fleet,overhead). */
    only: { type: 'string' },
    out: { type: 'string', default: 'BENCHMARKS.md' },
  },
});
const vcdbMb = Number(flags['vcdb-mb']);
const fleetMb = Number(flags['fleet-mb']);
const rssMib = Number(flags['rss-mib']);
const rounds = Math.max(3, Number(flags.rounds));
const schedulerCount = Number(flags.schedulers);
const overheadCount = Number(flags.appliances);
const MiB = 1024 * 1024;

interface Figure {
  readonly goal: string;
  readonly measured: string;
  readonly baseline: string;
  readonly ratio: number;
  /** Whether the goal holds for this ratio. */
  readonly met: boolean;
  readonly note: string;
}
const figures: Figure[] = [];
const log = (text: string): void => console.error(`bench: ${text}`);

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
};
const secs = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const mibs = (bytes: number, ms: number): string => `${(bytes / MiB / (ms / 1000)).toFixed(1)} MiB/s`;

function bash(command: string): number {
  const t0 = performance.now();
  const res = spawnSync('/bin/bash', ['-c', command], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (res.status !== 0) throw new Error(`bench: \`${command}\` failed: ${res.stderr.toString()}`);
  return performance.now() - t0;
}

function rawConfigFor(s3: EmbeddedS3, spool: string, targets: Record<string, unknown>[]): Record<string, unknown> {
  return {
    s3: { bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, checksums: 'when-required', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    spool: { dir: spool, minFreeMiB: 0 },
    retention: { afterBackup: false },
    targets,
  };
}

function configFor(s3: EmbeddedS3, spool: string, targets: Record<string, unknown>[]): Config {
  return parseConfig(rawConfigFor(s3, spool, targets), { env: {} });
}

/** The classic script's commands on a simulated VCSA 5.5 (the same binaries as the profile). */
function classicCommands(a: SimAppliance, out: string): { stop: string; dump: string; start: string } {
  const bin = `${a.root}/opt/vmware/vpostgres/1.0/bin`;
  return {
    stop: `${a.serviceCommand} vmware-vpxd stop && ${a.serviceCommand} vmware-inventoryservice stop`,
    dump: `. ${a.root}/etc/vmware-vpx/embedded_db.cfg && PGPASSWORD="$EMB_DB_PASSWORD" ${bin}/pg_dump "$EMB_DB_INSTANCE" -U "$EMB_DB_USER" -Fp -c > ${out}/postgres.sql && ${a.root}/usr/lib/vmware-vpx/inventoryservice/scripts/backup.sh -file ${out}/inventory_services.DB >/dev/null`,
    start: `${a.serviceCommand} vmware-inventoryservice start && ${a.serviceCommand} vmware-vpxd start`,
  };
}

async function benchWindow(s3: EmbeddedS3, dir: string): Promise<string> {
  log(`window: filling a ${vcdbMb} MiB VCDB`);
  const fillAt = performance.now();
  const a = await createSimAppliance({ name: 'benchvc', baseDir: join(dir, 'appliances'), auditLog: join(dir, 'audit.jsonl'), vcdbMb });
  const fillMs = performance.now() - fillAt;
  const keepRaw = join(dir, 'vcdb-dump.sql');
  try {
    // Ours is the `vcsa-backup backup` command, in its own process as a user runs it: in this
    // process it would share the heap and the collector with the embedded S3 server.
    const raw = rawConfigFor(s3, join(dir, 'spool'), [{ name: 'benchvc', profile: 'vcsa-5.5', executor: { type: 'local' }, variables: a.variables }]);
    const config = parseConfig(raw, { env: {} });
    const configPath = join(dir, 'window-fleet.yaml');
    await writeFile(configPath, stringifyYaml(raw));
    const store = createS3ObjectStore(config.s3, silentLogger);
    const ours: { dump: number; window: number; compress: number; upload: number }[] = [];
    const bare: number[] = [];
    const classic: number[] = [];
    // Services-down time as the appliance itself records it (its audit log: the first service
    // gone to the last one ready again), the same clock for ours and the classic script.
    // Split in three: first service stopped → last stopped, → first running again (the dumps
    // and what surrounds them), → last running: where a difference between the two comes from.
    type Downtime = { total: number; stopping: number; between: number; starting: number };
    const oursDown: Downtime[] = [];
    const classicDown: Downtime[] = [];
    const auditPath = join(dir, 'audit.jsonl');
    const lastDowntime = async (): Promise<Downtime> => {
      const entries = parseAudit(await readFile(auditPath, 'utf8'));
      const last = quiesceIntervals(entries).at(-1);
      if (!last || last.to === null) throw new Error('bench: the audit log shows no closed window');
      const inside = entries.filter((e) => e.ts >= last.from && e.ts <= (last.to ?? 0));
      const lastStopped = Math.max(...inside.filter((e) => e.state === 'stopped').map((e) => e.ts));
      const firstRunning = Math.min(...inside.filter((e) => e.state === 'running').map((e) => e.ts));
      return { total: last.to - last.from, stopping: lastStopped - last.from, between: firstRunning - lastStopped, starting: last.to - firstRunning };
    };
    const parts = (d: readonly Downtime[]): string => `stopping ${median(d.map((x) => x.stopping)).toFixed(0)} ms, dumps ${median(d.map((x) => x.between)).toFixed(0)} ms, starting ${median(d.map((x) => x.starting)).toFixed(0)} ms`;
    let rawBytes = 0;
    for (let r = 0; r < rounds; r++) {
      const out = join(dir, `bare-${r}`);
      bash(`mkdir -p ${out}`);
      const cmd = classicCommands(a, out);
      // Bare dumps: the same commands with the services stopped, timed alone.
      bash(cmd.stop);
      bare.push(bash(cmd.dump));
      bash(cmd.start);
      rawBytes = (await stat(join(out, 'postgres.sql'))).size;
      if (r === 0) bash(`cp ${out}/postgres.sql ${keepRaw}`);
      bash(`rm -rf ${out}`);
      // The classic script's whole window (stop; dump > file; start) and ours, in turn first,
      // so that neither always runs on the other's warm cache.
      const runClassic = async (): Promise<void> => {
        bash(`mkdir -p ${out}`);
        classic.push(bash(`${cmd.stop} && ${cmd.dump} && ${cmd.start}`));
        classicDown.push(await lastDowntime());
        bash(`rm -rf ${out}`);
      };
      const runOurs = async (): Promise<void> => {
        const res = await runCli(['backup', '--target', 'benchvc', '--config', configPath, '--json'], { LOG_LEVEL: 'warn' }, 3_600_000);
        if (res.code !== 0) throw new Error(`bench: backup failed: ${res.stderr.slice(-2000)}`);
        const [summary] = (JSON.parse(res.stdout) as { backups: { manifestKey: string }[] }).backups;
        if (!summary) throw new Error(`bench: backup printed no backup: ${res.stdout}`);
        oursDown.push(await lastDowntime());
        const manifest = await readManifest(store, summary.manifestKey);
        const t = manifest.timings;
        ours.push({ dump: t['dumpMs'] ?? NaN, window: manifest.quiesce?.ms ?? NaN, compress: t['compressMs'] ?? NaN, upload: t['uploadMs'] ?? NaN });
      };
      if (r % 2 === 0) {
        await runClassic();
        await runOurs();
      } else {
        await runOurs();
        await runClassic();
      }
    }
    store.close();
    const dumpOurs = median(ours.map((o) => o.dump));
    const dumpBare = median(bare);
    const winOurs = median(ours.map((o) => o.window));
    const winClassic = median(classic);
    // Paired by round (the two ran back to back): the spread says how much of a difference is noise.
    const pairedDiffs = oursDown.map((d, i) => (d.total - (classicDown[i]?.total ?? NaN)).toFixed(0)).join(', ');
    const downOurs = median(oursDown.map((d) => d.total));
    const downClassic = median(classicDown.map((d) => d.total));
    figures.push({
      goal: `window's dump part ≤ 1.05× the bare dumps (${vcdbMb} MiB VCDB, ${(rawBytes / MiB).toFixed(0)} MiB SQL dump)`,
      measured: secs(dumpOurs),
      baseline: secs(dumpBare),
      ratio: dumpOurs / dumpBare,
      met: dumpOurs / dumpBare <= 1.05,
      note: 'pg_dump -Fp -c > file + backup.sh -file, services stopped, same binaries',
    });
    figures.push({
      goal: 'whole window ≤ the classic script\'s (stop; dump > file; start)',
      measured: secs(winOurs),
      baseline: secs(winClassic),
      ratio: winOurs / winClassic,
      met: winOurs <= winClassic,
      note: 'from our first stop command to every service confirmed running (status), lease checks included; the classic script: its wall time',
    });
    figures.push({
      goal: 'services down (the appliance\'s audit log) ≤ the classic script\'s',
      measured: secs(downOurs),
      baseline: secs(downClassic),
      ratio: downOurs / downClassic,
      met: downOurs <= downClassic,
      note: `first service stopped → last service running again, as the simulated appliance records it; medians: ours ${parts(oursDown)}; classic ${parts(classicDown)}; ours − classic by round: ${pairedDiffs} ms`,
    });
    // What the window adds around the dumps, which the dumps' own noise hides in the totals.
    const aroundOurs = median(oursDown.map((d) => d.stopping + d.starting));
    const aroundClassic = median(classicDown.map((d) => d.stopping + d.starting));
    figures.push({
      goal: 'services down outside the dumps (stopping + starting, audit log) ≤ the classic script\'s',
      measured: `${aroundOurs.toFixed(0)} ms`,
      baseline: `${aroundClassic.toFixed(0)} ms`,
      ratio: aroundOurs / aroundClassic,
      met: aroundOurs <= aroundClassic,
      note: 'first service stopped → last stopped, plus first running again → last running; the same `service` scripts; ours sends each command on its own',
    });
    log(`window: dump ${secs(dumpOurs)} vs bare ${secs(dumpBare)}; window ${secs(winOurs)} vs classic ${secs(winClassic)}; services down ${secs(downOurs)} vs ${secs(downClassic)}, outside the dumps ${aroundOurs.toFixed(0)} vs ${aroundClassic.toFixed(0)} ms`);
    return `VCDB filled to ${vcdbMb} MiB in ${secs(fillMs)}; dump ${(rawBytes / MiB).toFixed(0)} MiB`;
  } finally {
    await a.destroy();
  }
}

async function benchCompress(s3: EmbeddedS3, dir: string): Promise<void> {
  const raw = join(dir, 'vcdb-dump.sql');
  const bytes = (await stat(raw)).size;
  const config = configFor(s3, join(dir, 'spool'), [{ name: 'x', profile: 'postgres', executor: { type: 'local' } }]);
  const store = createS3ObjectStore(config.s3, silentLogger);
  const client = new S3Client({ endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
  const oursC: number[] = [];
  const oursCU: number[] = [];
  const baseC: number[] = [];
  const baseCU: number[] = [];
  let gzBytes = 0;
  for (let r = 0; r < rounds; r++) {
    const copy = join(dir, `c${r}.sql`);
    execFileSync('cp', [raw, copy]);
    const t0 = performance.now();
    const gz = await compressOnce(copy, config.compression);
    const t1 = performance.now();
    await store.putFile(`bench/ours-${r}.gz`, gz.path, { expectedSha256: gz.sha256 });
    const t2 = performance.now();
    gzBytes = gz.bytes;
    oursC.push(t1 - t0);
    oursCU.push(t2 - t0);
    await rm(copy, { force: true });
    await rm(gz.path, { force: true });

    const cliGz = join(dir, `cli-${r}.gz`);
    const c = bash(`set -o pipefail; gzip -6 -c ${raw} | tee >(sha256sum > ${cliGz}.sha256) > ${cliGz}`);
    const u0 = performance.now();
    await new Upload({ client, params: { Bucket: s3.bucket, Key: `bench/cli-${r}.gz`, Body: createReadStream(cliGz) }, partSize: 8 * MiB, queueSize: 4 }).done();
    baseC.push(c);
    baseCU.push(c + performance.now() - u0);
    await rm(cliGz, { force: true });
  }
  store.close();
  client.destroy();
  const [oc, bc, ocu, bcu] = [median(oursC), median(baseC), median(oursCU), median(baseCU)];
  figures.push({
    goal: `compress + checksum throughput ≥ \`gzip -6 | tee >(sha256sum)\` (gzip ${(bytes / gzBytes).toFixed(1)}×)`,
    measured: mibs(bytes, oc),
    baseline: mibs(bytes, bc),
    ratio: bc / oc,
    met: oc <= bc,
    note: `compression.threads 0 = ${cpus().length} threads, level 6, sha256 of raw and gzip`,
  });
  figures.push({
    goal: 'compress + checksum + upload ≥ the shell pipeline + upload',
    measured: mibs(bytes, ocu),
    baseline: mibs(bytes, bcu),
    ratio: bcu / ocu,
    met: ocu <= bcu,
    note: 'ours also re-downloads the object to verify its sha256 (s3.verify: download); baseline is a plain multipart upload, 8 MiB parts',
  });
  log(`compress: ${mibs(bytes, oc)} vs ${mibs(bytes, bc)}; with upload ${mibs(bytes, ocu)} vs ${mibs(bytes, bcu)}`);
}

/**
 * Issue 11 item 6: 6 appliances "whose upload takes about as long as their dump". An S3 endpoint
 * on this machine takes an upload at memory speed, so the bench puts a link of fixed uplink
 * bandwidth in front of it (throttled-link.ts) for both contenders: calibrated on the first
 * appliance so that its compressed artifacts take as long to upload as the classic dump took
 * (`--uplink-mibps N` fixes it instead). Each round also runs both contenders on the bare local
 * endpoint, where the 2 cores that run the appliances' databases, the dumps, the compression and
 * the S3 server are the limit.
 */
async function benchFleet(s3: EmbeddedS3): Promise<void> {
  log(`fleet: 6 appliances with ${fleetMb} MiB VCDBs, 2 workers`);
  const link = await startThrottledLink(s3.endpoint, Infinity);
  const bucket = `fleet-${Date.now()}`;
  const h = await startFleetHarness({
    count: 6,
    workers: 2,
    s3Endpoint: link.url,
    s3Bucket: bucket,
    sim: { vcdbMb: fleetMb, s3AccessKeyId: s3.accessKeyId, s3SecretAccessKey: s3.secretAccessKey, s3Region: s3.region },
    tune: { quiesce: { leaseSeconds: 30, watchdogIntervalSeconds: 10 } },
  });
  try {
    const config = h.config();
    const store = createS3ObjectStore(config.s3, silentLogger);
    const client = new S3Client({ endpoint: link.url, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
    await client.send(new CreateBucketCommand({ Bucket: bucket })).catch((err: unknown) => {
      if ((err as { name?: string }).name !== 'BucketAlreadyOwnedByYou') throw err;
    });
    const appliances = h.fleet.appliances.map((a) => {
      if (!('serviceCommand' in a)) throw new Error(`bench: ${a.name} is not a simulated VCSA 5.5 (the classic loop drives its service scripts)`);
      return a;
    });
    const artifactFiles = ['postgres.sql.gz', 'inventory_services.DB.gz'];
    // The classic loop: per appliance stop, dump, start, gzip, upload, one after the other.
    const classicLoop = async (tag: string): Promise<{ ms: number; dumpMs: number; gzBytes: number }[]> => {
      const steps = [];
      for (const a of appliances) {
        const out = join(h.dir, `classic-${a.name}`);
        const cmd = classicCommands(a, out);
        const t0 = performance.now();
        bash(`mkdir -p ${out} && ${cmd.stop}`);
        const dumpMs = bash(cmd.dump);
        bash(`${cmd.start} && gzip -6 ${out}/postgres.sql ${out}/inventory_services.DB`);
        let gzBytes = 0;
        for (const f of artifactFiles) {
          gzBytes += (await stat(join(out, f))).size;
          await new Upload({ client, params: { Bucket: bucket, Key: `classic/${a.name}/${tag}/${f}`, Body: createReadStream(join(out, f)) }, partSize: 8 * MiB, queueSize: 4 }).done();
        }
        steps.push({ ms: performance.now() - t0, dumpMs, gzBytes });
        bash(`rm -rf ${out}`);
      }
      return steps;
    };
    const ours = async (): Promise<{ makespan: number; bound: number }> => {
      const res = await h.cli(['run', '--wait', '--json'], {}, 1_800_000);
      if (res.code !== 0) throw new Error(`bench: run --wait failed: ${res.stderr.slice(-2000)}`);
      const doc = JSON.parse(res.stdout) as { backups: { manifestKey: string }[] };
      const manifests = await Promise.all(doc.backups.map((b) => readManifest(store, b.manifestKey)));
      const start = Math.min(...manifests.map((m) => Date.parse(m.createdAt)));
      const end = Math.max(...manifests.map((m) => Date.parse(m.completedAt)));
      const windows = manifests.reduce((s, m) => s + (m.quiesce?.ms ?? 0), 0);
      const lastBack = manifests.reduce((best, m) => (m.quiesce && (!best.quiesce || m.quiesce.startedAt > best.quiesce.startedAt) ? m : best));
      const oneUpload = Date.parse(lastBack.completedAt) - Date.parse(lastBack.quiesce?.startedAt ?? lastBack.completedAt);
      return { makespan: end - start, bound: windows + oneUpload };
    };

    // Calibration: upload time = dump time on the first appliance, by the classic loop's own measure.
    const fixed = flags['uplink-mibps'] === undefined ? undefined : Number(flags['uplink-mibps']) * MiB;
    let rate = fixed;
    if (rate === undefined) {
      const [first] = await classicLoop('calibrate');
      if (!first) throw new Error('bench: no appliance to calibrate on');
      rate = first.gzBytes / (first.dumpMs / 1000);
    }
    log(`fleet: uplink ${(rate / MiB).toFixed(2)} MiB/s`);
    const result = { wan: { mk: [] as number[], cl: [] as number[], bd: [] as number[] }, local: { mk: [] as number[], cl: [] as number[], bd: [] as number[] } };
    for (let r = 0; r < rounds; r++) {
      for (const [name, bytesPerSecond] of [['wan', rate], ['local', Infinity]] as const) {
        link.setRate(bytesPerSecond);
        const c0 = performance.now();
        await classicLoop(`${name}-${r}`);
        result[name].cl.push(performance.now() - c0);
        const o = await ours();
        result[name].mk.push(o.makespan);
        result[name].bd.push(o.bound);
        log(`fleet ${name} round ${r + 1}: makespan ${secs(o.makespan)}, classic ${secs(result[name].cl.at(-1) ?? NaN)}, bound ${secs(o.bound)}`);
      }
    }
    store.close();
    client.destroy();
    const wan = { mk: median(result.wan.mk), cl: median(result.wan.cl), bd: median(result.wan.bd) };
    const local = { mk: median(result.local.mk), cl: median(result.local.cl), bd: median(result.local.bd) };
    const uplink = `${(rate / MiB).toFixed(1)} MiB/s uplink${fixed === undefined ? ' (calibrated: upload time = dump time)' : ''}`;
    figures.push({ goal: '6 appliances whose upload takes as long as their dump: ≥ 1.7× faster than the classic sequential loop', measured: secs(wan.mk), baseline: secs(wan.cl), ratio: wan.cl / wan.mk, met: wan.cl / wan.mk >= 1.7, note: `${fleetMb} MiB VCDBs, ${uplink}; classic: stop, pg_dump > file, backup.sh, start, gzip -6, upload, per appliance` });
    figures.push({ goal: 'the same: makespan ≤ 1.15 × (Σ windows + one upload)', measured: secs(wan.mk), baseline: secs(wan.bd), ratio: wan.mk / wan.bd, met: wan.mk / wan.bd <= 1.15, note: 'one upload: compress + upload + verify + manifest of the last appliance after its services were back' });
    figures.push({ goal: 'the same fleet, S3 on this machine without a link limit: ≥ 1.7× faster than the classic loop', measured: secs(local.mk), baseline: secs(local.cl), ratio: local.cl / local.mk, met: local.cl / local.mk >= 1.7, note: `makespan / (Σ windows + one upload) = ${(local.mk / local.bd).toFixed(2)}; the 2 cores run the appliances' databases, the dumps, compression and the S3 server` });
  } finally {
    await h.close();
    await link.close();
  }
}

/**
 * Issue 11 item 6: a 200-appliance fleet of tiny databases, 2 workers, one `run --wait`. Invariant
 * 1 must hold (audit log), and the per-appliance overhead — what a job spends outside its own
 * stop, dump, start, compress and upload, and outside waiting for the fleet slot (other
 * appliances' windows) — is measured per job from the queue's processedOn/finishedOn and the
 * manifest's step timings. Also the hand-over: from one appliance's services confirmed running
 * to the next appliance's first stop, the part of the overhead that lengthens the fleet's night.
 */
async function benchOverhead(): Promise<void> {
  log(`overhead: ${overheadCount} appliances with tiny databases, 2 workers`);
  // 3 connections per running appliance: more than the machine's server allows.
  const pg = await startPrivatePostgres(await freePort(), overheadCount * 4 + 100);
  try {
    const t0 = performance.now();
    const h = await startFleetHarness({
      count: overheadCount,
      workers: 2,
      // vpxd writes an event each tick: 200 of them at the default 40 ms would saturate 2 cores.
      sim: { pgUrl: pg.url, tickMs: 5000 },
      tune: { quiesce: { leaseSeconds: 30, watchdogIntervalSeconds: 10, waitSeconds: 3600 }, worker: { lockSeconds: 30, stalledIntervalSeconds: 30, backoffSeconds: 5 } },
    });
    log(`overhead: fleet up in ${secs(performance.now() - t0)}`);
    try {
      const config = h.config();
      const res = await h.cli(['run', '--wait', '--json'], {}, 3_600_000);
      if (res.code !== 0) throw new Error(`bench: run --wait failed: ${res.stderr.slice(-2000)}`);
      const report = auditReport(await h.audit());
      const closed = report.intervals.filter((i) => i.to !== null);
      if (!report.ok || closed.length < overheadCount) throw new Error(`bench: invariant 1 broken or windows missing: ${report.overlaps.length} overlaps, max ${report.maxConcurrent} quiesced at once, ${closed.length} windows`);
      const store = createS3ObjectStore(config.s3, silentLogger);
      const queue = new Queue(backupQueueName, queueOptions(config, h.redis));
      try {
        const jobs = await queue.getJobs(['completed'], 0, -1);
        const steps = ['leaseWaitMs', 'stopMs', 'dumpMs', 'startMs', 'compressMs', 'encryptMs', 'uploadMs'];
        const overheads: number[] = [];
        const windows: { from: number; to: number }[] = [];
        let retried = 0;
        for (const job of jobs) {
          if (job.attemptsMade > 1) retried++;
          const result = job.returnvalue as { manifestKey: string };
          const m = await readManifest(store, result.manifestKey);
          if (!m.quiesce) throw new Error(`bench: ${result.manifestKey} records no quiesce window`);
          const work = steps.reduce((sum, k) => sum + (m.timings[k] ?? 0), 0);
          overheads.push((job.finishedOn ?? NaN) - (job.processedOn ?? NaN) - work);
          const to = Date.parse(m.quiesce.startedAt);
          windows.push({ from: to - m.quiesce.ms, to });
        }
        if (jobs.length !== overheadCount) throw new Error(`bench: ${jobs.length} completed jobs, expected ${overheadCount}`);
        // From the worker's side: services confirmed running on one appliance → the stop command sent to the next.
        windows.sort((a, b) => a.from - b.from);
        const handovers = windows.slice(1).map((w, i) => w.from - (windows[i]?.to ?? NaN));
        const sorted = [...overheads].sort((a, b) => a - b);
        const p95 = sorted[Math.floor(sorted.length * 0.95)] ?? NaN;
        const med = median(overheads);
        const windowsMs = closed.reduce((sum, w) => sum + ((w.to ?? 0) - w.from), 0);
        const makespan = Math.max(...closed.map((w) => w.to ?? 0)) - Math.min(...closed.map((w) => w.from));
        figures.push({
          goal: `${overheadCount} appliances: per-appliance overhead (queue, lease, bookkeeping) ≤ 100 ms median, invariant 1 held`,
          measured: `${med.toFixed(0)} ms`,
          baseline: '100 ms (goal)',
          ratio: med / 100,
          met: med <= 100,
          note: `per job: queue's active time minus lease wait, stop, dump, start, compress, upload; p95 ${p95.toFixed(0)} ms; ${retried} jobs retried; 0 overlaps in ${closed.length} windows`,
        });
        figures.push({
          goal: `${overheadCount} appliances: hand-over from one window to the next ≤ 100 ms median`,
          measured: `${median(handovers).toFixed(0)} ms`,
          baseline: '100 ms (goal)',
          ratio: median(handovers) / 100,
          met: median(handovers) <= 100,
          note: `services confirmed running on one appliance → stop command to the next (manifests); windows ${secs(windowsMs)} of ${secs(makespan)} from first stop to last start (audit log)`,
        });
        log(`overhead: median ${med.toFixed(0)} ms, p95 ${p95.toFixed(0)} ms, hand-over median ${median(handovers).toFixed(0)} ms, ${retried} retried`);
        const gaps = jobTimelineGaps(jobs, h.workers.map((w) => w.log()).join('\n'));
        log(`overhead: where a job's time goes (median gap between consecutive log lines of one job, n jobs):\n${gaps.map((g) => `  ${g.medianMs.toFixed(0).padStart(6)} ms  ${g.from} → ${g.to} (${g.n})`).join('\n')}`);
      } finally {
        await queue.close();
        store.close();
      }
    } finally {
      await h.close();
    }
  } finally {
    await pg.stop();
  }
}

/**
 * A profile of the bookkeeping from the workers' own logs: for each job, its log lines in order
 * (framed by the queue's processedOn and finishedOn), and for each pair of consecutive lines the
 * median gap over all jobs, largest first. Gaps between "dumping" and "dumped" are the work; the
 * rest is where the overhead is.
 */
function jobTimelineGaps(jobs: readonly { id?: string | undefined; processedOn?: number | undefined; finishedOn?: number | undefined }[], logText: string): { from: string; to: string; medianMs: number; n: number }[] {
  const byJob = new Map<string, { time: number; msg: string }[]>();
  for (const line of logText.split('\n')) {
    if (!line.startsWith('{')) continue;
    let entry: { time?: unknown; msg?: unknown; jobId?: unknown; artifact?: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue;
    }
    // The logs' time is ISO 8601 (src/log.ts).
    const time = typeof entry.time === 'string' ? Date.parse(entry.time) : entry.time;
    if (typeof entry.jobId !== 'string' || typeof time !== 'number' || Number.isNaN(time) || typeof entry.msg !== 'string') continue;
    const msg = typeof entry.artifact === 'string' ? `${entry.msg} [${entry.artifact}]` : entry.msg;
    const lines = byJob.get(entry.jobId) ?? [];
    lines.push({ time, msg });
    byJob.set(entry.jobId, lines);
  }
  const gaps = new Map<string, { from: string; to: string; ms: number[] }>();
  for (const job of jobs) {
    if (!job.id || job.processedOn === undefined || job.finishedOn === undefined) continue;
    const lines = [{ time: job.processedOn, msg: '(queue: job taken)' }, ...(byJob.get(job.id) ?? []).sort((a, b) => a.time - b.time), { time: job.finishedOn, msg: '(queue: job finished)' }];
    lines.slice(1).forEach((to, i) => {
      const from = lines[i] ?? to;
      const key = JSON.stringify([from.msg, to.msg]);
      const gap = gaps.get(key) ?? { from: from.msg, to: to.msg, ms: [] };
      gap.ms.push(to.time - from.time);
      gaps.set(key, gap);
    });
  }
  return [...gaps.values()].map(({ from, to, ms }) => ({ from, to, medianMs: median(ms), n: ms.length })).sort((a, b) => b.medianMs - a.medianMs);
}

/** A dump-like file (COPY lines of statistics) of `bytes`, written fast. */
async function writeDumpLike(path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path);
  let written = 0;
  for (let i = 0; written < bytes; ) {
    const lines: string[] = [];
    for (let k = 0; k < 20000; k++, i++) lines.push(`${2 + (i % 60) * 3}\t${1 + Math.floor(i / 600)}\t${(i * 2654435761) % 10007}\n`);
    const chunk = lines.join('');
    written += chunk.length;
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await finished(out);
}

/**
 * A real `vcsa-backup worker` process backing up one dump of `--rss-mib` MiB with the default
 * settings (dump into the spool, compression on every core, upload, download verify, manifest),
 * its peak RSS read from /proc (VmHWM) once the job is done. The dump comes from a `postgres`
 * target whose pg_dump is a script printing a dump-like file, so that size costs no database.
 */
async function benchMemory(s3: EmbeddedS3, dir: string): Promise<void> {
  const source = join(dir, 'rss-source.sql');
  log(`memory: writing a ${rssMib} MiB dump`);
  await writeDumpLike(source, rssMib * MiB);
  const pgBin = join(dir, 'rss-pg-bin');
  await mkdir(pgBin, { recursive: true });
  await writeFile(join(pgBin, 'pg_dump'), `#!/bin/sh\nexec cat ${source}\n`, { mode: 0o755 });
  const statusMiB = async (pid: number, field: string): Promise<number> => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return Number(m?.[1] ?? NaN) / 1024;
  };
  const peaks: number[] = [];
  const idle: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const prefix = `bench-rss-${process.pid}-${r}`;
    const configPath = join(dir, `rss-${r}.yaml`);
    await writeFile(
      configPath,
      stringifyYaml({
        redis: { url: 'redis://127.0.0.1:6379', prefix },
        s3: { bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, checksums: 'when-required', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
        spool: { dir: join(dir, `rss-spool-${r}`), minFreeMiB: 0 },
        retention: { afterBackup: false },
        targets: [{ name: 'rss', profile: 'postgres', executor: { type: 'local' }, variables: { PG_BIN: pgBin } }],
      }),
    );
    // As installed (the image's entry point, npm's bin link): through the shebang and its V8 flags.
    const worker = spawn(binPath, ['worker', '--config', configPath], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, REDIS_URL: '', LOG_LEVEL: 'info' } });
    let text = '';
    worker.stderr.on('data', (b: Buffer) => (text += b.toString()));
    const exited = once(worker, 'exit');
    try {
      await waitFor('the worker to start', () => text.includes('"worker started"'), 120_000);
      idle.push(await statusMiB(worker.pid ?? -1, 'VmRSS'));
      const res = await runCli(['run', '--wait', '--target', 'rss', '--config', configPath], {}, 3_600_000);
      if (res.code !== 0) throw new Error(`bench: run --wait failed: ${res.stderr.slice(-2000)}`);
      peaks.push(await statusMiB(worker.pid ?? -1, 'VmHWM'));
    } finally {
      worker.kill('SIGTERM');
      await exited;
      const redis = new Redis('redis://127.0.0.1:6379');
      await removeFleetKeys(redis, prefix).finally(() => redis.disconnect());
      await rm(join(dir, `rss-spool-${r}`), { recursive: true, force: true });
    }
  }
  await rm(source, { force: true });
  const peak = median(peaks);
  figures.push({ goal: `worker peak RSS ≤ 200 MiB (${rssMib} MiB dump: dump → spool, gzip, upload + verify)`, measured: `${peak.toFixed(0)} MiB`, baseline: '200 MiB (goal)', ratio: peak / 200, met: peak <= 200, note: `a \`vcsa-backup worker\` process (VmHWM); the same worker idle after start: ${median(idle).toFixed(0)} MiB` });
  log(`memory: peak ${peak.toFixed(0)} MiB, idle ${median(idle).toFixed(0)} MiB`);
}

async function benchSchedulers(s3: EmbeddedS3, dir: string): Promise<void> {
  const prefix = `bench-sched-${process.pid}`;
  const raw = {
    redis: { url: process.env['REDIS_URL'] || 'redis://127.0.0.1:6379', prefix },
    s3: { bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    spool: { dir: join(dir, 'spool'), minFreeMiB: 0 },
    targets: Array.from({ length: schedulerCount }, (_, i) => ({ name: `vc${String(i).padStart(4, '0')}`, profile: 'postgres', executor: { type: 'local' } })),
  };
  const config = parseConfig(raw, { env: {} });
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  const times: number[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      await removeFleetKeys(redis, prefix);
      const t0 = performance.now();
      const res = await syncSchedules(config, redis);
      times.push(performance.now() - t0);
      if (res.upserted.length !== schedulerCount) throw new Error(`bench: ${res.upserted.length} schedulers upserted, expected ${schedulerCount}`);
    }
  } finally {
    await removeFleetKeys(redis, prefix).catch(() => undefined);
    redis.disconnect();
  }
  const t = median(times);
  figures.push({ goal: `${schedulerCount} job schedulers upserted ≤ 5 s`, measured: secs(t), baseline: '5.00 s (goal)', ratio: t / 5000, met: t <= 5000, note: '`schedule` (syncSchedules) from scratch, including listing them back' });
  log(`schedulers: ${secs(t)}`);
}

/**
 * Issue 9 item 7: a fleet.yaml whose targets share settings through anchors and aliases must load
 * and schedule as fast as the same fleet written out in full. Each round loads the file (as
 * `schedule` does: read, YAML with the alias-bomb check, validation) and upserts every scheduler
 * from scratch; the two files alternate so that load on the machine hits both alike.
 */
async function benchAliases(s3: EmbeddedS3, dir: string): Promise<void> {
  const prefix = `bench-alias-${process.pid}`;
  const redisUrl = process.env['REDIS_URL'] || 'redis://127.0.0.1:6379';
  const head = stringifyYaml({
    redis: { url: redisUrl, prefix },
    s3: { bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    spool: { dir: join(dir, 'spool'), minFreeMiB: 0 },
  });
  const executor = `{ type: ssh, host: vcsa.example.net, user: root, hostKey: "SHA256:${'A'.repeat(43)}", password: { env: BENCH_SSH_PASSWORD }, connectTimeoutSeconds: 20 }`;
  const variables = '{ VPG_BIN: /opt/vmware/vpostgres/1.0/bin, DB_CFG: /etc/vmware-vpx/embedded_db.cfg }';
  const timeouts = '{ dumpSeconds: 7200, serviceSeconds: 300 }';
  const schedule = '{ cron: "0 2 * * *", tz: Europe/Berlin }';
  const name = (i: number): string => `vc${String(i).padStart(4, '0')}`;
  const aliased = Array.from({ length: schedulerCount }, (_, i) =>
    i === 0
      ? `  - { name: ${name(i)}, profile: vcsa-5.5, executor: &ssh_defaults ${executor}, variables: &vars ${variables}, timeouts: &timeouts ${timeouts}, schedule: &nightly ${schedule} }`
      : `  - { name: ${name(i)}, profile: vcsa-5.5, executor: *ssh_defaults, variables: *vars, timeouts: *timeouts, schedule: *nightly }`,
  );
  const expanded = Array.from({ length: schedulerCount }, (_, i) => `  - { name: ${name(i)}, profile: vcsa-5.5, executor: ${executor}, variables: ${variables}, timeouts: ${timeouts}, schedule: ${schedule} }`);
  const files = { aliases: join(dir, 'fleet-aliases.yaml'), expanded: join(dir, 'fleet-expanded.yaml') };
  await writeFile(files.aliases, `${head}targets:\n${aliased.join('\n')}\n`);
  await writeFile(files.expanded, `${head}targets:\n${expanded.join('\n')}\n`);
  const env = { BENCH_SSH_PASSWORD: 'bench-password' };
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const times = { aliases: [] as number[], expanded: [] as number[] };
  try {
    for (let r = 0; r < rounds; r++) {
      for (const kind of r % 2 === 0 ? (['aliases', 'expanded'] as const) : (['expanded', 'aliases'] as const)) {
        await removeFleetKeys(redis, prefix);
        const t0 = performance.now();
        const config = loadConfig(files[kind], { env });
        const res = await syncSchedules(config, redis);
        times[kind].push(performance.now() - t0);
        if (res.upserted.length !== schedulerCount) throw new Error(`bench: ${kind}: ${res.upserted.length} schedulers upserted, expected ${schedulerCount}`);
      }
    }
  } finally {
    await removeFleetKeys(redis, prefix).catch(() => undefined);
    redis.disconnect();
  }
  const a = median(times.aliases);
  const e = median(times.expanded);
  figures.push({
    goal: `${schedulerCount}-target fleet.yaml with anchors/aliases: load + \`schedule\` ≤ 1.10× the same fleet written out`,
    measured: secs(a),
    baseline: secs(e),
    ratio: a / e,
    met: a / e <= 1.1,
    note: 'loadConfig (YAML, alias-bomb check, validation) + syncSchedules from scratch; `executor: *ssh_defaults` etc. on every target after the first',
  });
  log(`aliases: ${secs(a)} vs expanded ${secs(e)}`);
}

function versionOf(cmd: string, args: string[]): string {
  const res = spawnSync(cmd, args, { encoding: 'utf8' });
  return (res.stdout || res.stderr || '').split('\n')[0]?.trim() ?? '?';
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vcsa-bench-'));
  const s3 = await startEmbeddedS3();
  const loadBefore = versionOf('uptime', []);
  const started = new Date();
  let windowNote = '';
  const failed: string[] = [];
  // A section that fails (e.g. workers too slow to start on a saturated machine) is reported, not fatal.
  const only = flags.only?.split(',').map((x) => x.trim());
  const section = async (name: string, run: () => Promise<unknown>): Promise<void> => {
    if (only && !only.includes(name)) return;
    try {
      await run();
    } catch (err) {
      log(`${name} failed: ${(err as Error).message}`);
      failed.push(`- ${name}: not measured in this run (${(err as Error).message.split('\n')[0] ?? ''})`);
    }
  };
  try {
    await section('window', async () => (windowNote = await benchWindow(s3, dir)));
    if (windowNote || only) await section('compress', () => benchCompress(s3, dir));
    await section('memory', () => benchMemory(s3, dir));
    await section('schedulers', () => benchSchedulers(s3, dir));
    await section('aliases', () => benchAliases(s3, dir));
    if (!flags['skip-fleet']) await section('fleet', () => benchFleet(s3));
    if (!flags['skip-fleet']) await section('overhead', () => benchOverhead());
  } finally {
    await s3.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const loadAfter = versionOf('uptime', []);
  const fauxqs = (JSON.parse(await readFile(new URL('../node_modules/fauxqs/package.json', import.meta.url), 'utf8')) as { version: string }).version;
  const command = `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim();
  const rows = figures.map((f) => `| ${f.goal} | ${f.measured} | ${f.baseline} | ${f.ratio.toFixed(2)} | ${f.met ? 'yes' : '**no**'} | ${f.note} |`);
  const text = [
    '# Benchmarks',
    '',
    `Written by \`${command}\` on ${started.toISOString()} (${rounds} rounds each, medians). Each figure is a ratio against a baseline measured in the same run on the same data; see bench/run.ts for what is measured.`,
    '',
    '## Machine',
    '',
    `- ${cpus().length} × ${cpus()[0]?.model.trim() ?? '?'}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB memory`,
    `- load before: \`${loadBefore}\``,
    `- load after: \`${loadAfter}\``,
    `- Node ${process.version}, ${versionOf(`${defaultPgBin}/pg_dump`, ['--version'])}, ${versionOf('gzip', ['--version'])}, embedded S3: fauxqs ${fauxqs}`,
    ...(windowNote ? [`- ${windowNote}`] : []),
    '',
    '## Figures',
    '',
    '| goal | measured | baseline | ratio | met | notes |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    ...(failed.length ? ['## Not measured', '', ...failed, ''] : []),
  ].join('\n');
  await writeFile(flags.out, text);
  console.log(text);
}

await main();
