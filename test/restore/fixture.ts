/**
 * One simulated VCSA 5.5, an embedded S3 endpoint, real Redis and PostgreSQL, and a Config that
 * points the real vcsa-5.5 profile at the simulator — what the restore and verify tests share.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { parseConfig, type Config, type TargetConfig } from '../../src/config/load.ts';
import { createExecutor } from '../../src/executors/index.ts';
import type { Executor } from '../../src/executors/executor.ts';
import { silentLogger } from '../../src/log.ts';
import { runBackup, type BackupOutcome } from '../../src/backup/run-backup.ts';
import { createSimAppliance, type SimAppliance } from '../../src/sim/appliance.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { s3ConfigFor } from '../support/s3.ts';
import { disagreeingInventoryScripts } from '../support/unquiesced-pair.ts';

export interface Fixture {
  readonly dir: string;
  readonly auditLog: string;
  readonly s3: EmbeddedS3;
  readonly store: ObjectStore;
  readonly redis: Redis;
  readonly prefix: string;
  readonly appliances: Map<string, SimAppliance>;
  config(overrides?: Record<string, unknown>): Config;
  /** The same config as fleet.yaml text, for the CLI. */
  yaml(overrides?: Record<string, unknown>): string;
  target(config: Config, name: string): TargetConfig;
  executor(target: TargetConfig): Executor;
  backup(name: string, overrides?: Record<string, unknown>): Promise<BackupOutcome>;
  /** A backup taken while the services run, whose dump pair is certain to disagree (unquiesced-pair.ts). */
  backupDisagreeing(name: string): Promise<BackupOutcome>;
  close(): Promise<void>;
}

export async function createFixture(applianceNames: readonly string[]): Promise<Fixture> {
  const suffix = randomBytes(4).toString('hex');
  const dir = await mkdtemp(join(tmpdir(), 'restore-test-'));
  const auditLog = join(dir, 'audit.jsonl');
  const s3 = await startEmbeddedS3({ bucket: `restore-${suffix}` });
  const redis = new Redis('redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 });
  const prefix = `test-restore-${suffix}`;
  const appliances = new Map<string, SimAppliance>();
  const executors: Executor[] = [];
  const store = createS3ObjectStore(s3ConfigFor(s3), silentLogger);
  try {
    for (const name of applianceNames) {
      appliances.set(name, await createSimAppliance({ name: `${name}-${suffix}`, baseDir: join(dir, 'appliances'), auditLog }));
    }
  } catch (err) {
    await Promise.allSettled([...appliances.values()].map((a) => a.destroy()));
    await s3.stop();
    redis.disconnect();
    throw err;
  }

  const targets = (variables: Record<string, Record<string, string>> = {}): Record<string, unknown>[] =>
    [...appliances.entries()].map(([name, sim]) => ({ name, profile: 'vcsa-5.5', executor: { type: 'local' }, variables: { ...sim.variables, ...variables[name] } }));
  const raw = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
      redis: { url: 'redis://127.0.0.1:6379', prefix },
      s3: { bucket: s3.bucket, prefix: 'vcsa', endpoint: s3.endpoint, forcePathStyle: true, checksums: 'when-required', partSizeMiB: 5, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      spool: { dir: join(dir, 'spool'), minFreeMiB: 0 },
      quiesce: { leaseSeconds: 30, waitSeconds: 30 },
      targets: targets(),
      ...overrides,
    });
  const config = (overrides: Record<string, unknown> = {}): Config => parseConfig(raw(overrides), { env: {} });
  const target = (cfg: Config, name: string): TargetConfig => {
    const t = cfg.targets.find((x) => x.name === name);
    if (!t) throw new Error(`no target ${name}`);
    return t;
  };
  const executor = (t: TargetConfig): Executor => {
    const e = createExecutor(t.executor, silentLogger);
    executors.push(e);
    return e;
  };
  const backup = async (name: string, overrides: Record<string, unknown> = {}): Promise<BackupOutcome> => {
    const cfg = config(overrides);
    const t = target(cfg, name);
    return runBackup({ config: cfg, target: t, executor: executor(t), store, logger: silentLogger });
  };
  return {
    dir,
    auditLog,
    s3,
    store,
    redis,
    prefix,
    appliances,
    config,
    yaml: (overrides = {}) => stringify(raw(overrides)),
    target,
    executor,
    backup,
    async backupDisagreeing(name) {
      const sim = appliances.get(name);
      if (!sim) throw new Error(`no appliance ${name}`);
      const INVSVC_SCRIPTS = await disagreeingInventoryScripts(dir, sim);
      return backup(name, { quiesce: { enabled: false }, targets: targets({ [name]: { INVSVC_SCRIPTS } }) });
    },
    async close() {
      await Promise.allSettled(executors.map((e) => e.close()));
      await Promise.allSettled([...appliances.values()].map((a) => a.destroy()));
      store.close();
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
      await s3.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
