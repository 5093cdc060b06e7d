/**
 * The chaos soak: a simulated fleet of ≥ 8 appliances, worker processes, a private Redis and an
 * S3 endpoint behind a fault-injecting proxy, driven through repeated `run --wait` runs while a
 * fault injector, at random moments and overlapping, SIGKILLs and SIGSTOPs/SIGCONTs workers,
 * restarts Redis, opens S3 fault windows (500, 503, SlowDown, reset mid-upload, stall, a
 * corrupted byte), fills the spool (a small tmpfs) and makes an appliance's dump hang past its
 * timeout. It checks the invariants over the audit log, the runs' outcomes, the proxy's record of
 * multipart uploads and manifests, the spool, and restores a sample of the backups in a drill.
 *
 * SSH drops are not injected: the simulated appliances use the local executor (the ssh
 * executor's dropped-connection handling is covered by test/executors/ssh.test.ts).
 */
import { execFile } from 'node:child_process';
import { mkdir, open, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { findOverlaps, quiesceIntervals, type QuiesceInterval } from '../src/sim/audit.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../src/storage/embedded-s3.ts';
import { startFleetHarness, writeSlowPgBin, type FleetHarness, type WorkerProcess } from '../test/support/fleet.ts';
import { waitFor } from '../test/support/poll.ts';
import { RedisServer } from '../test/support/redis-server.ts';
import { s3FaultKinds, startS3FaultProxy, type S3FaultProxy } from './s3-fault-proxy.ts';

const run = promisify(execFile);

export const faultKinds = ['worker-sigkill', 'worker-sigstop', 'redis-restart', ...s3FaultKinds, 'spool-full', 'command-hang'] as const;
export type FaultKind = (typeof faultKinds)[number];

export interface SoakOptions {
  readonly seconds: number;
  readonly appliances: number;
  readonly workers?: number;
  readonly seed?: number;
  /** How many backups (newest, distinct appliances first) are restored in a drill at the end. */
  readonly drills?: number;
  /** Mean seconds between two fault injections (default 4). */
  readonly faultEverySeconds?: number;
  readonly log?: (line: string) => void;
  /** Ends the soak early (faults stop, the current run finishes, the checks run). */
  readonly signal?: AbortSignal;
}

export interface FaultEvent {
  readonly kind: FaultKind;
  readonly start: number;
  end: number;
  readonly detail: string;
}

export interface RunRecord {
  readonly n: number;
  readonly start: number;
  readonly end: number;
  readonly exitCode: number;
  readonly successes: { target: string; id: string; manifestKey: string }[];
  readonly failures: { target: string; code: string; message: string }[];
}

export interface SoakReport {
  readonly seconds: number;
  readonly appliances: number;
  readonly workers: number;
  readonly seed: number;
  readonly runs: readonly RunRecord[];
  readonly faults: readonly FaultEvent[];
  readonly figures: {
    readonly faultsPerKind: Record<string, number>;
    readonly s3FaultHits: Record<string, number>;
    readonly recoveries: number;
    readonly unrecovered: number;
    readonly worstRecoveryMs: number;
    readonly backupsCompleted: number;
    readonly failuresByCode: Record<string, number>;
    readonly requiescesPerKind: Record<string, number>;
    readonly requiesces: number;
    readonly quiesces: number;
    readonly longestQuiesceMs: number;
    readonly quiesceBoundMs: number;
    readonly multipartUploads: number;
    readonly orphanedUploadsAfterSigkill: number;
    readonly drills: { target: string; id: string; ok: boolean }[];
  };
  readonly violations: readonly string[];
  readonly notInjected: readonly string[];
}

/** The soak's fleet settings: short leases so faults are noticed in seconds. */
const tuning = {
  quiesce: { leaseSeconds: 4, watchdogIntervalSeconds: 1, waitSeconds: 600 },
  worker: { concurrency: 2, attempts: 8, lockSeconds: 5, stalledIntervalSeconds: 3, backoffSeconds: 0.5, uploadAttempts: 12 },
  redis: { unreachableSeconds: 120 },
  s3: { partSizeMiB: 5 },
};
const dumpSeconds = 10;
const serviceSeconds = 30;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function mountTmpfs(dir: string, mib: number): Promise<boolean> {
  await mkdir(dir, { recursive: true });
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir]);
    return true;
  } catch {
    return false;
  }
}

async function fillDisk(path: string): Promise<number> {
  const s = await statfs(join(path, '..'));
  const free = Number(s.bavail) * Number(s.bsize);
  const file = await open(path, 'w');
  const chunk = Buffer.alloc(1 << 20);
  let written = 0;
  try {
    while (written + chunk.length <= free) {
      await file.write(chunk);
      written += chunk.length;
    }
  } catch {
    // ENOSPC: full, which is the point.
  } finally {
    await file.close();
  }
  return written;
}

async function listSpool(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const target of await readdir(root).catch(() => [] as string[])) {
    if (target.startsWith('.') || target === 'filler') continue;
    for (const id of await readdir(join(root, target)).catch(() => [] as string[])) out.push(`${target}/${id}`);
  }
  return out;
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? (() => undefined);
  const seed = options.seed ?? Date.now() % 1_000_000;
  const random = mulberry32(seed);
  const between = (lo: number, hi: number): number => lo + random() * (hi - lo);
  const workerCount = options.workers ?? 3;
  const violations: string[] = [];
  const notInjected = ['ssh-drop: the simulated appliances use the local executor (dropped SSH sessions: test/executors/ssh.test.ts)'];
  const faults: FaultEvent[] = [];
  const runs: RunRecord[] = [];

  const base = await mkdtemp(join(tmpdir(), 'soak-'));
  let redis: RedisServer | undefined;
  let s3: EmbeddedS3 | undefined;
  let proxy: S3FaultProxy | undefined;
  let h: FleetHarness | undefined;
  const spoolDir = join(base, 'spool');
  const tmpfs = await mountTmpfs(spoolDir, 96);
  if (!tmpfs) notInjected.push('spool-full: cannot mount a tmpfs here (needs root); the spool is a plain directory');
  const kinds = faultKinds.filter((k) => tmpfs || k !== 'spool-full');
  const realBins = new Map<string, string>();
  try {
    redis = await RedisServer.create(base);
    s3 = await startEmbeddedS3({ bucket: 'soak' });
    proxy = await startS3FaultProxy(s3.endpoint, { random, stallMs: 8000 });
    h = await startFleetHarness({
      count: options.appliances,
      workers: 0,
      redisUrl: redis.url,
      s3Endpoint: proxy.endpoint,
      s3Bucket: 'soak',
      sim: { tickMs: 250 },
      tune: { ...tuning, spool: { dir: spoolDir, minFreeMiB: 8 } },
      edit: (raw, dir) => {
        for (const t of raw['targets'] as { name: string; variables: Record<string, string>; timeouts?: unknown }[]) {
          realBins.set(t.name, `${t.variables['ROOT']}/opt/vmware/vpostgres/1.0/bin`);
          t.variables['VPG_BIN'] = join(dir, `slow-${t.name}`, 'slow-vpg-bin');
          t.timeouts = { dumpSeconds, serviceSeconds };
        }
      },
    });
    const fleet = h;
    // Started here, not by the harness, to wait for them as long as a loaded machine needs.
    const first = Array.from({ length: workerCount }, () => fleet.startWorker());
    await waitFor('the workers to start', () => first.every((w) => w.log().includes('"worker started"')), 300_000, 200);
    for (const [name, bin] of realBins) await writeSlowPgBin(join(fleet.dir, `slow-${name}`), bin, join(fleet.dir, `hang-${name}`), 3600);
    const targets = fleet.fleet.appliances.map((a) => a.name);
    log(`soak: ${targets.length} appliances, ${workerCount} workers, Redis ${redis.url}, S3 ${s3.endpoint} behind ${proxy.endpoint}, spool ${tmpfs ? 'tmpfs 96 MiB' : 'plain dir'}, seed ${seed}, ${options.seconds} s`);

    const soakStart = Date.now();
    let deadline = soakStart + options.seconds * 1000;
    options.signal?.addEventListener('abort', () => (deadline = Date.now()), { once: true });
    const stoppedWorkers = new Set<WorkerProcess>();
    let redisBusy = false;
    let replacing = false;
    let spoolBusy = false;
    const inFlight = new Set<Promise<void>>();

    const inject = async (kind: FaultKind): Promise<void> => {
      const start = Date.now();
      const record = (detail: string): FaultEvent => {
        const e: FaultEvent = { kind, start, end: start, detail };
        faults.push(e);
        return e;
      };
      // Only workers that finished starting: killing one that is still loading would just pile
      // up replacements on a loaded machine (and tests nothing a started worker does not).
      const alive = fleet.workers.filter((w) => w.alive() && !stoppedWorkers.has(w) && w.log().includes('"worker started"'));
      switch (kind) {
        case 'worker-sigkill': {
          const w = alive[Math.floor(random() * alive.length)];
          if (!w || alive.length < 2 || replacing) return;
          replacing = true;
          const e = record(`worker ${w.n} (pid ${w.pid})`);
          w.child.kill('SIGKILL');
          await w.exited();
          const replacement = fleet.startWorker();
          try {
            await waitFor('a replacement worker', () => replacement.log().includes('"worker started"') || !replacement.alive(), 300_000, 200);
          } finally {
            replacing = false;
            e.end = Date.now();
          }
          return;
        }
        case 'worker-sigstop': {
          const w = alive[Math.floor(random() * alive.length)];
          if (!w || alive.length < 2) return;
          const e = record(`worker ${w.n} (pid ${w.pid})`);
          stoppedWorkers.add(w);
          w.child.kill('SIGSTOP');
          await delay(between(3000, 9000));
          w.child.kill('SIGCONT');
          stoppedWorkers.delete(w);
          e.end = Date.now();
          return;
        }
        case 'redis-restart': {
          if (redisBusy || !redis) return;
          redisBusy = true;
          const e = record(`port ${redis.port}`);
          try {
            await redis.shutdown();
            await delay(between(300, 3000));
            await redis.start();
          } finally {
            redisBusy = false;
            e.end = Date.now();
          }
          return;
        }
        case 'spool-full': {
          if (spoolBusy) return;
          spoolBusy = true;
          const filler = join(spoolDir, 'filler');
          const e = record('');
          try {
            const bytes = await fillDisk(filler);
            (e as { detail: string }).detail = `${Math.round(bytes / 1048576)} MiB filler`;
            await delay(between(3000, 8000));
          } finally {
            await rm(filler, { force: true });
            spoolBusy = false;
            e.end = Date.now();
          }
          return;
        }
        case 'command-hang': {
          const target = targets[Math.floor(random() * targets.length)] ?? 'vc01';
          const flag = join(fleet.dir, `hang-${target}`);
          const e = record(`${target}: pg_dump hangs (timeout ${dumpSeconds} s)`);
          await writeFile(flag, '');
          try {
            await delay(between(5000, 12000));
          } finally {
            await rm(flag, { force: true });
            e.end = Date.now();
          }
          return;
        }
        default: {
          if (!proxy) return;
          const e = record('');
          const handle = proxy.open(kind);
          try {
            // Long enough to meet uploads and verification reads, which come in bursts.
            await delay(between(4000, 12000));
          } finally {
            handle.close();
            e.end = Date.now();
          }
        }
      }
    };

    const meanGap = (options.faultEverySeconds ?? 4) * 1000;
    const injector = (async () => {
      while (Date.now() < deadline) {
        await delay(between(meanGap * 0.25, meanGap * 1.75));
        if (Date.now() >= deadline) break;
        const kind = kinds[Math.floor(random() * kinds.length)] ?? 'worker-sigkill';
        const p = inject(kind).catch((err: unknown) => void violations.push(`injecting ${kind} failed: ${String(err)}`));
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
      }
    })();

    // Continuous check: never two appliances quiesced at once (maxConcurrent 1).
    const seenOverlaps = new Set<string>();
    const checkOverlaps = async (): Promise<void> => {
      for (const o of findOverlaps(quiesceIntervals(await fleet.audit()).filter((i) => i.from >= soakStart))) {
        const id = `${o.a.appliance}@${o.a.from}/${o.b.appliance}@${o.b.from}`;
        if (!seenOverlaps.has(id)) {
          seenOverlaps.add(id);
          violations.push(`two appliances quiesced at once: ${o.a.appliance} from ${new Date(o.a.from).toISOString()} and ${o.b.appliance} from ${new Date(o.b.from).toISOString()}`);
        }
      }
    };
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        await checkOverlaps().catch(() => undefined);
        await delay(2000);
      }
    })();

    for (let n = 1; Date.now() < deadline; n++) {
      const start = Date.now();
      const res = await fleet.cli(['run', '--wait', '--json'], {}, 60 * 60_000);
      const end = Date.now();
      let doc: { backups?: { target: string; id: string; manifestKey: string }[]; failures?: { target: string; code: string; message: string }[]; error?: { code: string; message: string } } = {};
      try {
        doc = JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}') as typeof doc;
      } catch {
        violations.push(`run ${n}: no JSON result (exit ${res.code}): ${res.stderr.slice(-500)}`);
      }
      if (res.code !== 0 && res.code !== 1) violations.push(`run ${n}: exit code ${res.code} (expected 0 or 1): ${res.stderr.slice(-500)}`);
      if (doc.error) violations.push(`run ${n}: the command failed: ${doc.error.code}: ${doc.error.message}`);
      const successes = (doc.backups ?? []).map((b) => ({ target: b.target, id: b.id, manifestKey: b.manifestKey }));
      const failures = doc.failures ?? [];
      for (const t of targets) {
        if (!successes.some((s) => s.target === t) && !failures.some((f) => f.target === t)) violations.push(`run ${n}: ${t} ended with neither a backup nor a failure reason`);
      }
      for (const f of failures) if (!f.code || !f.message) violations.push(`run ${n}: ${f.target} failed without a reason`);
      runs.push({ n, start, end, exitCode: res.code, successes, failures });
      log(`soak: run ${n} in ${Math.round((end - start) / 1000)} s: ${successes.length} ok, ${failures.length} failed${failures.length ? ` (${failures.map((f) => `${f.target} ${f.code}`).join(', ')})` : ''}; faults so far ${faults.length}`);
    }
    await injector;
    await Promise.allSettled([...inFlight]);
    watching = false;
    await watcher;
    await checkOverlaps();

    // Every appliance ends with its services running.
    try {
      await waitFor('every appliance running', async () => (await Promise.all(fleet.fleet.appliances.map((a) => a.servicesRunning()))).every(Boolean), 120_000, 500);
    } catch {
      violations.push('an appliance was left with services stopped');
    }

    // No appliance stopped longer than its dump timeout + lease + watchdog interval (+ the service commands).
    const audit = await fleet.audit();
    const intervals = quiesceIntervals(audit).filter((i) => i.from >= soakStart);
    const bound = (dumpSeconds + tuning.quiesce.leaseSeconds + tuning.quiesce.watchdogIntervalSeconds + 2 * serviceSeconds) * 1000;
    let longest = 0;
    for (const i of intervals) {
      const length = (i.to ?? Date.now()) - i.from;
      longest = Math.max(longest, length);
      if (length > bound) violations.push(`${i.appliance} stopped for ${length} ms from ${new Date(i.from).toISOString()} (bound ${bound} ms)`);
    }

    // Re-quiesces: an appliance quiesced more than once within one run, blamed on the faults
    // injected between its previous quiesce and this one.
    const requiescesPerKind: Record<string, number> = {};
    let requiesces = 0;
    for (const r of runs) {
      for (const t of targets) {
        const mine = intervals.filter((i) => i.appliance === t && i.from >= r.start && i.from <= r.end).sort((a, b) => a.from - b.from);
        mine.slice(1).forEach((i, k) => {
          requiesces += 1;
          const prev = mine[k] as QuiesceInterval;
          const blamed = new Set(faults.filter((f) => f.start <= i.from && f.end >= prev.from).map((f) => f.kind));
          if (blamed.size === 0) requiescesPerKind['(none in window)'] = (requiescesPerKind['(none in window)'] ?? 0) + 1;
          for (const kind of blamed) requiescesPerKind[kind] = (requiescesPerKind[kind] ?? 0) + 1;
        });
      }
    }

    // Multipart uploads: none left open, except by a worker SIGKILLed after its last request
    // (nothing can abort those but the bucket's AbortIncompleteMultipartUpload rule: s3-setup).
    let orphanedAfterKill = 0;
    for (const [id, u] of proxy.uploads) {
      if (u.state !== 'open') continue;
      const killed = faults.some((f) => f.kind === 'worker-sigkill' && f.start >= u.lastRequestAt - 1000);
      if (killed) orphanedAfterKill += 1;
      else violations.push(`multipart upload ${id} of ${u.key} left open (last request ${new Date(u.lastRequestAt).toISOString()}) without a killed worker`);
    }

    // Manifests: each reported backup has one; no backup committed that no run reported (a job committed twice).
    const reported = new Set(runs.flatMap((r) => r.successes.map((s) => s.manifestKey)));
    const committed = new Set(proxy.manifests.map((m) => m.key));
    for (const key of reported) if (!committed.has(key)) violations.push(`reported backup ${key} has no committed manifest`);
    for (const key of committed) if (!reported.has(key)) violations.push(`duplicate manifest: ${key} was committed but no run reported it (a job committed twice)`);

    // Spool: only backups that ended in failure may keep their spool (for the next attempt).
    const lastRun = runs[runs.length - 1];
    for (const entry of await listSpool(spoolDir)) {
      const target = entry.split('/')[0] ?? '';
      if (!lastRun?.failures.some((f) => f.target === target)) violations.push(`spool left behind: ${entry}`);
    }

    // Recoveries: after each fault, how long until the fleet committed its next backup.
    let recoveries = 0;
    let unrecovered = 0;
    let worstRecoveryMs = 0;
    for (const f of faults) {
      const next = proxy.manifests.find((m) => m.at >= f.end);
      if (next) {
        recoveries += 1;
        worstRecoveryMs = Math.max(worstRecoveryMs, next.at - f.end);
      } else {
        unrecovered += 1;
      }
    }

    // Drill: restore a sample of the successful backups (newest first, distinct appliances).
    const drills: { target: string; id: string; ok: boolean }[] = [];
    const sample: { target: string; id: string }[] = [];
    for (const r of [...runs].reverse()) {
      for (const s of r.successes) if (sample.length < (options.drills ?? 2) && !sample.some((x) => x.target === s.target)) sample.push(s);
    }
    for (const s of sample) {
      const res = await fleet.cli(['verify', '--target', s.target, '--backup', s.id, '--json'], {}, 10 * 60_000);
      drills.push({ ...s, ok: res.code === 0 });
      if (res.code !== 0) violations.push(`drill: backup ${s.id} of ${s.target} did not restore (exit ${res.code}): ${res.stdout.slice(-400)}${res.stderr.slice(-400)}`);
    }

    const count = <T extends string>(items: readonly T[]): Record<string, number> => items.reduce<Record<string, number>>((acc, k) => ({ ...acc, [k]: (acc[k] ?? 0) + 1 }), {});
    return {
      seconds: options.seconds,
      appliances: targets.length,
      workers: workerCount,
      seed,
      runs,
      faults,
      figures: {
        faultsPerKind: count(faults.map((f) => f.kind)),
        s3FaultHits: Object.fromEntries(proxy.hits),
        recoveries,
        unrecovered,
        worstRecoveryMs,
        backupsCompleted: runs.reduce((s, r) => s + r.successes.length, 0),
        failuresByCode: count(runs.flatMap((r) => r.failures.map((f) => f.code))),
        requiescesPerKind,
        requiesces,
        quiesces: intervals.length,
        longestQuiesceMs: longest,
        quiesceBoundMs: bound,
        multipartUploads: proxy.uploads.size,
        orphanedUploadsAfterSigkill: orphanedAfterKill,
        drills,
      },
      violations,
      notInjected,
    };
  } finally {
    await h?.close().catch(() => undefined);
    await proxy?.stop().catch(() => undefined);
    await s3?.stop().catch(() => undefined);
    await redis?.shutdown().catch(() => undefined);
    if (tmpfs) await run('umount', ['-l', spoolDir]).catch(() => undefined);
    await rm(base, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The report as the lines the soak prints (and README's Reliability section quotes). */
export function formatReport(r: SoakReport): string {
  const f = r.figures;
  const kv = (o: Record<string, number>): string => Object.entries(o).sort().map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  return [
    `soak: ${Math.round(r.seconds / 60)} min (${r.seconds} s), ${r.appliances} appliances, ${r.workers} workers, seed ${r.seed}`,
    `runs: ${r.runs.length}; backups completed: ${f.backupsCompleted}; failed with a recorded reason: ${kv(f.failuresByCode)}`,
    `faults injected: ${r.faults.length} (${kv(f.faultsPerKind)})`,
    `S3 requests faulted: ${kv(f.s3FaultHits)}`,
    `recoveries: ${f.recoveries} of ${r.faults.length} faults followed by a committed backup (${f.unrecovered} at the very end); worst recovery ${(f.worstRecoveryMs / 1000).toFixed(1)} s`,
    `quiesces: ${f.quiesces}; re-quiesces: ${f.requiesces} (${kv(f.requiescesPerKind)}); longest ${(f.longestQuiesceMs / 1000).toFixed(1)} s (bound ${(f.quiesceBoundMs / 1000).toFixed(0)} s)`,
    `multipart uploads: ${f.multipartUploads}; left open by a SIGKILLed worker: ${f.orphanedUploadsAfterSigkill} (the bucket's AbortIncompleteMultipartUpload rule removes them)`,
    `drills: ${f.drills.map((d) => `${d.target} ${d.id} ${d.ok ? 'ok' : 'FAILED'}`).join(', ') || 'none'}`,
    `not injected: ${r.notInjected.join('; ')}`,
    r.violations.length === 0 ? 'violations: none' : `VIOLATIONS (${r.violations.length}):\n  ${r.violations.join('\n  ')}`,
  ].join('\n');
}
