/**
 * A simulated fleet plus N worker processes (`vcsa-backup worker`) for the fleet tests: a
 * fleet.yaml tuned for short leases and retries, a unique Redis prefix, helpers to run the CLI,
 * find who holds an appliance, and a cleanup that leaves nothing behind (queues obliterated,
 * prefix keys deleted, workers stopped, appliances destroyed).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis, type RedisOptions } from 'ioredis';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { loadConfig, type Config } from '../../src/config/load.ts';
import type { LeaseEntry } from '../../src/locks/fleet-lease.ts';
import { readAudit, type AuditEntry } from '../../src/sim/audit.ts';
import { startSimFleet, type SimFleet, type SimFleetOptions } from '../../src/sim/fleet.ts';
import { removeFleetKeys } from '../../workers/queues.ts';
import { waitFor } from './poll.ts';

export const binPath = fileURLToPath(new URL('../../bin/vcsa-backup.js', import.meta.url));

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI to its end with no terminal, as cron or CI would. */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      process.execPath,
      [binPath, ...args],
      { env: { ...process.env, LOG_LEVEL: 'info', REDIS_URL: '', ...env }, maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          reject(new Error(`CLI ${args.join(' ')} did not finish: ${err.message}\n${stderr}`));
          return;
        }
        resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
    child.stdin?.end();
  });
}

export { waitFor };

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export interface WorkerProcess {
  readonly n: number;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly logPath: string;
  /** stderr so far (pino JSON lines). */
  log(): string;
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
}

/** Short leases, quick stall detection and backoff: the fleet reacts in seconds. */
export const fastTuning = {
  quiesce: { leaseSeconds: 2, watchdogIntervalSeconds: 1, waitSeconds: 120 },
  worker: { concurrency: 2, attempts: 5, lockSeconds: 3, stalledIntervalSeconds: 2, backoffSeconds: 0.3, uploadAttempts: 10 },
} as const;

export interface FleetHarnessOptions {
  readonly count: number;
  readonly workers?: number;
  /** Merged (one level deep) into fleet.yaml after the simulator wrote it. */
  readonly tune?: Record<string, Record<string, unknown>>;
  /** Per target name: profile variables to add. */
  readonly variables?: (name: string, dir: string) => Record<string, string> | undefined;
  /** Extra raw changes to fleet.yaml. */
  readonly edit?: (raw: Record<string, unknown>, dir: string) => void;
  readonly redisUrl?: string;
  /** How the harness's own connection reaches Redis, when not by redisUrl (Sentinel, TLS, a user). */
  readonly redisOptions?: RedisOptions;
  /** Extra environment of the worker processes (and of `cli`). */
  readonly env?: NodeJS.ProcessEnv;
  readonly s3Endpoint?: string;
  readonly s3Bucket?: string;
  readonly sim?: Partial<SimFleetOptions>;
}

export interface FleetHarness {
  readonly dir: string;
  readonly fleet: SimFleet;
  readonly configPath: string;
  readonly prefix: string;
  readonly redisUrl: string;
  /** The Redis the fleet uses; reconnects forever. */
  readonly redis: Redis;
  readonly workers: WorkerProcess[];
  config(): Config;
  startWorker(): WorkerProcess;
  /** Runs the CLI with this fleet's config. */
  cli(args: readonly string[], env?: NodeJS.ProcessEnv, timeoutMs?: number): Promise<CliResult>;
  audit(): Promise<AuditEntry[]>;
  leaseHolders(): Promise<LeaseEntry[]>;
  /** The worker process that holds the fleet lease for `target`, if one of ours does. */
  holderOf(target: string): Promise<WorkerProcess | undefined>;
  /** Rewrites fleet.yaml. */
  editConfig(edit: (raw: Record<string, unknown>) => void): Promise<void>;
  stopWorker(w: WorkerProcess, signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  close(): Promise<void>;
}

export async function startFleetHarness(options: FleetHarnessOptions): Promise<FleetHarness> {
  const suffix = randomBytes(4).toString('hex');
  const dir = await mkdtemp(join(tmpdir(), 'fleet-test-'));
  const redisUrl = options.redisUrl ?? 'redis://127.0.0.1:6379';
  const prefix = `test-fleet-${suffix}`;
  const fleet = await startSimFleet({
    count: options.count,
    outDir: dir,
    redisUrl,
    redisPrefix: prefix,
    ...(options.s3Endpoint ? { s3Endpoint: options.s3Endpoint } : {}),
    ...(options.s3Bucket ? { s3Bucket: options.s3Bucket } : {}),
    ...options.sim,
  });
  const { replyMapping: _none, ...redisOptions } = options.redisOptions ?? {};
  const redis = options.redisOptions
    ? new Redis({ ...redisOptions, maxRetriesPerRequest: null, retryStrategy: () => 100 })
    : new Redis(redisUrl, { maxRetriesPerRequest: null, retryStrategy: () => 100 });
  redis.on('error', () => undefined);
  const workers: WorkerProcess[] = [];
  let closed = false;

  const configPath = fleet.configPath;
  const editConfig = async (edit: (raw: Record<string, unknown>) => void): Promise<void> => {
    const raw = parseYaml(await readFile(configPath, 'utf8')) as Record<string, unknown>;
    edit(raw);
    await writeFile(configPath, stringifyYaml(raw));
  };
  await editConfig((raw) => {
    const base: Record<string, Record<string, unknown>> = fastTuning;
    const tune = options.tune ?? {};
    for (const section of new Set([...Object.keys(base), ...Object.keys(tune)])) {
      raw[section] = { ...((raw[section]) ?? {}), ...base[section], ...tune[section] };
    }
    raw['retention'] = { afterBackup: false };
    const targets = raw['targets'] as { name: string; variables: Record<string, string> }[];
    for (const t of targets) t.variables = { ...t.variables, ...options.variables?.(t.name, dir) };
    options.edit?.(raw, dir);
  });

  let n = 0;
  const startWorker = (): WorkerProcess => {
    n += 1;
    const logPath = join(dir, `worker-${n}.log`);
    const file = createWriteStream(logPath);
    const child = spawn(process.execPath, [binPath, 'worker', '--config', configPath], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, REDIS_URL: '', LOG_LEVEL: 'info', VCSA_BACKUP_WORKER: String(n), ...options.env },
    });
    let text = '';
    child.stderr?.on('data', (b: Buffer) => {
      text += b.toString('utf8');
      file.write(b);
    });
    const exit = once(child, 'exit').then(([code, signal]) => {
      file.end();
      return { code: code as number | null, signal: signal as NodeJS.Signals | null };
    });
    const w: WorkerProcess = {
      n,
      child,
      pid: child.pid ?? -1,
      logPath,
      log: () => text,
      exited: () => exit,
      alive: () => child.exitCode === null && child.signalCode === null,
    };
    workers.push(w);
    return w;
  };

  const stopWorker = async (w: WorkerProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
    if (!w.alive()) return w.exited();
    w.child.kill(signal);
    const timer = setTimeout(() => w.child.kill('SIGKILL'), 20_000);
    try {
      return await w.exited();
    } finally {
      clearTimeout(timer);
    }
  };

  const leaseHolders = async (): Promise<LeaseEntry[]> =>
    Object.values(await redis.hgetall(`${prefix}:lease:holders`)).map((raw) => JSON.parse(raw) as LeaseEntry);

  const harness: FleetHarness = {
    dir,
    fleet,
    configPath,
    prefix,
    redisUrl,
    redis,
    workers,
    config: () => loadConfig(configPath, { env: { ...process.env, REDIS_URL: '', ...options.env } }),
    startWorker,
    cli: (args, env = {}, timeoutMs) => runCli([...args, '--config', configPath], { ...options.env, ...env }, timeoutMs),
    audit: () => readAudit(fleet.auditLog),
    leaseHolders,
    async holderOf(target) {
      const entry = (await leaseHolders()).find((e) => e.target === target);
      if (!entry) return undefined;
      const pid = Number(entry.holder.split(':')[1]);
      return workers.find((w) => w.pid === pid);
    },
    editConfig,
    stopWorker,
    async close() {
      if (closed) return;
      closed = true;
      await Promise.allSettled(workers.map((w) => stopWorker(w)));
      await cleanRedis(redis, prefix).catch(() => undefined);
      redis.disconnect();
      await fleet.stop().catch(() => undefined);
      if (!process.env['KEEP_TEST_DIRS']) await rm(dir, { recursive: true, force: true });
    },
  };

  for (let i = 0; i < (options.workers ?? 0); i++) startWorker();
  // A worker is ready once it logged "worker started": jobs queued before would wait anyway,
  // but tests that kill workers need them all consuming. A harness that fails to start leaves
  // nothing behind (workers, appliances, their databases, the directory).
  try {
    await waitFor('workers to start', () => workers.every((w) => w.log().includes('"worker started"')), 120_000); // a bound, not a wait: three workers compiling at once on 2 busy cores took over 30 s
  } catch (err) {
    await harness.close();
    throw err;
  }
  return harness;
}

/** Obliterates the fleet's queues and deletes every key under its prefix. */
export async function cleanRedis(redis: Redis, prefix: string): Promise<void> {
  await removeFleetKeys(redis, prefix);
}

/**
 * A fleet whose dumps take `seconds` longer while a flag file exists, so that a test can act
 * while an appliance is quiesced: pass `edit` to startFleetHarness (each target's VPG_BIN then
 * points at a wrapper directory), then `install(h.dir)` writes the wrappers and creates the flag
 * (removing it makes the dumps fast again). Returns the flag's path.
 */
export function slowDumpFleet(seconds: number): { edit: NonNullable<FleetHarnessOptions['edit']>; install: (dir: string) => Promise<string> } {
  const realVpgBin = new Map<string, string>();
  return {
    edit: (raw, dir) => {
      for (const t of raw['targets'] as { name: string; variables: Record<string, string> }[]) {
        realVpgBin.set(t.name, `${t.variables['ROOT']}/opt/vmware/vpostgres/1.0/bin`);
        t.variables['VPG_BIN'] = join(dir, `slow-${t.name}`, 'slow-vpg-bin');
      }
    },
    install: async (dir) => {
      const flag = join(dir, 'slow-dump');
      await writeFile(flag, '');
      for (const [name, bin] of realVpgBin) await writeSlowPgBin(join(dir, `slow-${name}`), bin, flag, seconds);
      return flag;
    },
  };
}

/**
 * Script wrappers that make the appliance slow or pause where a test wants to hit it: a
 * vPostgres bin directory whose pg_dump, while `flag` exists, announces itself in `marker` (its
 * pid, when a marker is given) and sleeps first; and a `service` that, while `flag` exists,
 * announces a start in `marker` (its pid) and waits before doing it.
 */
export async function writeSlowPgBin(dir: string, realVpgBin: string, flag: string, sleepSeconds: number, marker?: string): Promise<string> {
  const bin = join(dir, 'slow-vpg-bin');
  await mkdir(bin, { recursive: true });
  const pgDump = join(bin, 'pg_dump');
  const announce = marker === undefined ? '' : `echo $$ > ${JSON.stringify(marker)}; `;
  await writeFile(pgDump, `#!/bin/bash\nif [ -e ${JSON.stringify(flag)} ]; then ${announce}sleep ${sleepSeconds}; fi\nexec ${JSON.stringify(`${realVpgBin}/pg_dump`)} "$@"\n`);
  await chmod(pgDump, 0o755);
  for (const tool of ['psql', 'pg_restore']) {
    await writeFile(join(bin, tool), `#!/bin/bash\nexec ${JSON.stringify(`${realVpgBin}/${tool}`)} "$@"\n`);
    await chmod(join(bin, tool), 0o755);
  }
  return bin;
}

export async function writePausingService(dir: string, name: string, realService: string, flag: string, marker: string, pauseSeconds: number): Promise<string> {
  const path = join(dir, `service-${name}`);
  await writeFile(
    path,
    `#!/bin/bash\nif [ "$2" = start ] && [ -e ${JSON.stringify(flag)} ]; then echo $$ > ${JSON.stringify(marker)}; sleep ${pauseSeconds}; fi\nexec ${JSON.stringify(realService)} "$@"\n`,
  );
  await chmod(path, 0o755);
  return path;
}

/** Quiesce intervals of one appliance with their ends, from the audit log. */
export function runningLinesAfter(entries: readonly AuditEntry[], appliance: string, after: number): AuditEntry[] {
  return entries.filter((e) => e.appliance === appliance && e.state === 'running' && e.ts >= after);
}
