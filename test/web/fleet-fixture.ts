import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../../src/config/load.ts';
import { createExecutor } from '../../src/executors/index.ts';
import { silentLogger } from '../../src/log.ts';
import { startSimFleet, type SimFleet } from '../../src/sim/fleet.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { enqueueBackups, waitForJobs, type JobOutcome } from '../../workers/producer.ts';
import { startWorker, type RunningWorker } from '../../workers/worker.ts';

/**
 * A simulated fleet with its own Redis prefix, tuned for tests (one attempt per job, short
 * leases), and in-process workers. `tune` edits fleet.yaml before it is loaded.
 */
export interface TestFleet {
  readonly dir: string;
  readonly fleet: SimFleet;
  readonly config: Config;
  readonly redis: Redis;
  /** Another config for the same appliances: own Redis prefix, edited by `tune`. */
  configVariant(name: string, tune: (raw: Record<string, unknown>) => void): Promise<Config>;
  startWorker(config?: Config): RunningWorker;
  backUp(targets: readonly string[], config?: Config): Promise<JobOutcome[]>;
  cleanup(): Promise<void>;
}

export function uniqueSuffix(): string {
  return randomBytes(4).toString('hex');
}

function tuneForTests(raw: Record<string, unknown>, prefix: string): void {
  const section = (k: string): Record<string, unknown> => (raw[k] ?? {}) as Record<string, unknown>;
  raw['redis'] = { ...section('redis'), prefix };
  raw['quiesce'] = { ...section('quiesce'), leaseSeconds: 10, watchdogIntervalSeconds: 2, waitSeconds: 60 };
  raw['worker'] = { ...section('worker'), attempts: 1, backoffSeconds: 1, uploadAttempts: 2, concurrency: 2, lockSeconds: 15, stalledIntervalSeconds: 10 };
  raw['retention'] = { ...section('retention'), afterBackup: false };
}

export async function startTestFleet(options: { count: number; name: string; tune?: (raw: Record<string, unknown>) => void }): Promise<TestFleet> {
  const dir = await mkdtemp(join(tmpdir(), `${options.name}-`));
  const prefixes: string[] = [];
  const workers: RunningWorker[] = [];
  const stores: { close(): void }[] = [];
  const redis = new Redis(process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 2 });
  let fleet: SimFleet | undefined;

  const writeVariant = async (name: string, tune?: (raw: Record<string, unknown>) => void): Promise<Config> => {
    if (!fleet) throw new Error('fleet not started');
    const raw = parseYaml(await readFile(fleet.configPath, 'utf8')) as Record<string, unknown>;
    const prefix = `${options.name}-${name}-${uniqueSuffix()}`;
    prefixes.push(prefix);
    tuneForTests(raw, prefix);
    tune?.(raw);
    const path = join(dir, `fleet-${name}.yaml`);
    await writeFile(path, stringifyYaml(raw));
    return loadConfig(path);
  };

  const cleanup = async (): Promise<void> => {
    await Promise.allSettled(workers.map((w) => w.close()));
    for (const s of stores) s.close();
    for (const prefix of prefixes) {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
    }
    redis.disconnect();
    await fleet?.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    fleet = await startSimFleet({ count: options.count, outDir: join(dir, 'fleet'), redisPrefix: `${options.name}-sim-${uniqueSuffix()}` });
    const config = await writeVariant('main', options.tune);
    const self: TestFleet = {
      dir,
      fleet,
      config,
      redis,
      configVariant: writeVariant,
      startWorker: (c = config) => {
        const store = createS3ObjectStore(c.s3, silentLogger);
        stores.push(store);
        const w = startWorker({ config: c, logger: silentLogger, store, makeExecutor: (t) => createExecutor(t.executor, silentLogger) });
        workers.push(w);
        return w;
      },
      backUp: async (targets, c = config) => {
        const jobs = await enqueueBackups(c, redis, targets, `t${Date.now()}${uniqueSuffix()}`);
        return waitForJobs(c, redis, jobs, { pollMs: 200 });
      },
      cleanup,
    };
    return self;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Prometheus text format → samples; enough of the format for /metrics (no timestamps, no histograms). */
export interface MetricSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export function parsePrometheus(text: string): { samples: MetricSample[]; types: Map<string, string> } {
  const samples: MetricSample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/g;
    let consumed = 0;
    for (let l = re.exec(body); l; l = re.exec(body)) {
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      consumed = re.lastIndex;
    }
    if (consumed !== body.length) throw new Error(`bad labels in: ${line}`);
    const value = Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad value in: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { samples, types };
}

export function metric(samples: readonly MetricSample[], name: string, labels: Record<string, string>): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}
