import type { Redis } from 'ioredis';
import type { SizedBackup } from './size-drop.ts';

/**
 * What the fleet looks like now, per target, in Redis: written by workers, read by `status`,
 * the dashboard and /metrics. One hash per target, `<prefix>:target:<name>`, with JSON fields.
 * Counters are plain integers so HINCRBY works.
 */
export interface LastSuccess {
  readonly id: string;
  readonly at: string;
  readonly manifestKey: string;
  readonly bytes: number;
  readonly rawBytes: number;
  readonly quiesceMs: number;
  readonly durationMs: number;
}

export interface LastFailure {
  readonly at: string;
  readonly code: string;
  readonly message: string;
  readonly attempt?: number;
  readonly final?: boolean;
}

export interface CurrentStep {
  readonly step: string;
  readonly at: string;
  readonly artifact?: string;
  readonly bytes?: number;
  readonly totalBytes?: number;
  readonly holder?: string;
}

export interface LastVerify {
  readonly id: string;
  readonly at: string;
  readonly ok: boolean;
  readonly message: string;
}

export interface TargetState {
  readonly name: string;
  readonly lastSuccess: LastSuccess | null;
  readonly lastFailure: LastFailure | null;
  readonly step: CurrentStep | null;
  readonly lastVerify: LastVerify | null;
  readonly successes: number;
  readonly failures: number;
  readonly retries: number;
  readonly uploadRetries: number;
  readonly bytesUploaded: number;
  /** Why the last backup had to dump again (e.g. its spool was lost). */
  readonly lastRequeue: { at: string; reason: string } | null;
}

export function targetStateKey(prefix: string, target: string): string {
  return `${prefix}:target:${target}`;
}

/** The last committed backups of a target (newest first, at most `sizeHistoryLength`): sizes for the size-drop check. */
export function sizeHistoryKey(prefix: string, target: string): string {
  return `${prefix}:sizes:${target}`;
}

const sizeHistoryLength = 100;

/** Per target: backup id → its last verification (LastVerify JSON). */
export function verifyHistoryKey(prefix: string, target: string): string {
  return `${prefix}:verifies:${target}`;
}

function json<T>(raw: string | undefined): T | null {
  if (raw === undefined || raw === '') return null;
  try {
    return JSON.parse(raw) as T;
  } catch {
    return null;
  }
}

export class FleetState {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  #key(target: string): string {
    return targetStateKey(this.#prefix, target);
  }

  async setStep(target: string, step: CurrentStep | null): Promise<void> {
    if (step === null) await this.#redis.hdel(this.#key(target), 'step');
    else await this.#redis.hset(this.#key(target), 'step', JSON.stringify(step));
  }

  async recordSuccess(target: string, success: LastSuccess): Promise<void> {
    await this.#redis
      .multi()
      .hset(this.#key(target), 'lastSuccess', JSON.stringify(success))
      .hincrby(this.#key(target), 'successes', 1)
      .hincrby(this.#key(target), 'bytesUploaded', success.bytes)
      .hdel(this.#key(target), 'step')
      .lpush(sizeHistoryKey(this.#prefix, target), JSON.stringify({ id: success.id, at: success.at, bytes: success.bytes, rawBytes: success.rawBytes }))
      .ltrim(sizeHistoryKey(this.#prefix, target), 0, sizeHistoryLength - 1)
      .exec();
  }

  /** The last `count` committed backups' sizes, newest first. */
  async recentSuccesses(target: string, count: number): Promise<SizedBackup[]> {
    const raws = await this.#redis.lrange(sizeHistoryKey(this.#prefix, target), 0, count - 1);
    return raws.map((r) => json<SizedBackup>(r)).filter((x): x is SizedBackup => x !== null);
  }

  async recordFailure(target: string, failure: LastFailure): Promise<void> {
    await this.#redis
      .multi()
      .hset(this.#key(target), 'lastFailure', JSON.stringify(failure))
      .hincrby(this.#key(target), failure.final === false ? 'retries' : 'failures', 1)
      .hdel(this.#key(target), 'step')
      .exec();
  }

  async recordUploadRetry(target: string): Promise<void> {
    await this.#redis.hincrby(this.#key(target), 'uploadRetries', 1);
  }

  async recordRequeue(target: string, reason: string): Promise<void> {
    await this.#redis.hset(this.#key(target), 'lastRequeue', JSON.stringify({ at: new Date().toISOString(), reason }));
  }

  async recordVerify(target: string, verify: LastVerify): Promise<void> {
    const all = verifyHistoryKey(this.#prefix, target);
    await this.#redis.multi().hset(this.#key(target), 'lastVerify', JSON.stringify(verify)).hset(all, verify.id, JSON.stringify(verify)).exec();
    // A hash per target, one field per verified backup: trimmed to the newest ids when it grows.
    if ((await this.#redis.hlen(all)) > 2 * sizeHistoryLength) {
      const ids = (await this.#redis.hkeys(all)).sort();
      await this.#redis.hdel(all, ...ids.slice(0, ids.length - sizeHistoryLength));
    }
  }

  /** The last verification of each backup (by backup id) that was verified. */
  async verifications(target: string): Promise<Map<string, LastVerify>> {
    const h = await this.#redis.hgetall(verifyHistoryKey(this.#prefix, target));
    const out = new Map<string, LastVerify>();
    for (const [id, raw] of Object.entries(h)) {
      const v = json<LastVerify>(raw);
      if (v) out.set(id, v);
    }
    return out;
  }

  async get(target: string): Promise<TargetState> {
    const h = await this.#redis.hgetall(this.#key(target));
    return {
      name: target,
      lastSuccess: json<LastSuccess>(h['lastSuccess']),
      lastFailure: json<LastFailure>(h['lastFailure']),
      step: json<CurrentStep>(h['step']),
      lastVerify: json<LastVerify>(h['lastVerify']),
      successes: Number(h['successes'] ?? 0),
      failures: Number(h['failures'] ?? 0),
      retries: Number(h['retries'] ?? 0),
      uploadRetries: Number(h['uploadRetries'] ?? 0),
      bytesUploaded: Number(h['bytesUploaded'] ?? 0),
      lastRequeue: json<{ at: string; reason: string }>(h['lastRequeue']),
    };
  }

  async all(targets: readonly string[]): Promise<TargetState[]> {
    return Promise.all(targets.map((t) => this.get(t)));
  }
}
