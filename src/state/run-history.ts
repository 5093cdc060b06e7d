import type { Redis } from 'ioredis';

/**
 * What each job attempt did and when, for the timeline, the per-appliance history and the
 * duration histograms of /metrics. The fleet state (fleet-state.ts) says how things are now;
 * this says how the night went. Workers write it through a RunRecorder; the dashboard reads it.
 *
 * One record per attempt of a backup job: a JSON string `<prefix>:run:<runId>` that expires
 * after `runRetentionMs`, indexed by start time in `<prefix>:runs` and, once ended, by end time
 * in `<prefix>:runs:done`. A record holds step marks — a step lasts from its mark to the next —
 * rather than spans, so recording is one append per step change and a crash leaves a record
 * whose last step is simply still open.
 */
export const runRetentionMs = 40 * 24 * 3600_000;

/** `lock`: waiting for the appliance's own lock; `precheck`: reaching it and waiting for a fleet slot. */
export type RunStep = 'lock' | 'precheck' | 'stop' | 'dump' | 'start' | 'compress' | 'upload' | 'manifest' | 'verify' | 'retention' | 'upload-retry';

export interface RunMark {
  readonly step: RunStep;
  /** Epoch ms. */
  readonly at: number;
  readonly artifact?: string;
}

export type RunOutcome = 'running' | 'ok' | 'failed' | 'retrying';

export interface RunRecord {
  /** `<jobId>#<attempt>`. */
  readonly runId: string;
  readonly jobId: string;
  readonly target: string;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly trigger: string;
  /** The worker that ran it. */
  readonly holder: string;
  readonly startedAt: number;
  readonly endedAt?: number;
  readonly outcome: RunOutcome;
  readonly marks: readonly RunMark[];
  /** Set when the backup committed (its manifest was stored). */
  readonly backup?: {
    readonly id: string;
    readonly committedAt: number;
    readonly bytes: number;
    readonly rawBytes: number;
    /** Services stopped → confirmed running again, as the manifest records it; absent when not quiesced. */
    readonly quiesce?: { readonly stoppedAt: number; readonly startedAt: number };
    /** The manifest's duration: first contact with the appliance → manifest stored. */
    readonly durationMs: number;
  };
  readonly error?: { readonly code: string; readonly message: string };
  /** The after-backup restore drill of this backup, when one ran. */
  readonly verify?: { readonly ok: boolean };
}

export function runKey(prefix: string, runId: string): string {
  return `${prefix}:run:${runId}`;
}

function runsKey(prefix: string): string {
  return `${prefix}:runs`;
}

function doneKey(prefix: string): string {
  return `${prefix}:runs:done`;
}

/** What a run is known by when it starts. */
export type RunStart = Pick<RunRecord, 'jobId' | 'target' | 'attempt' | 'maxAttempts' | 'trigger' | 'holder'>;

/**
 * Records one attempt as it goes. Writes are chained (each one the whole record, a few hundred
 * bytes) so they land in order; a write that fails is logged by the caller's catch and never
 * fails the backup.
 */
export class RunRecorder {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #now: () => number;
  #record: RunRecord;
  #chain: Promise<void> = Promise.resolve();
  #lastStep = '';

  constructor(redis: Redis, prefix: string, start: RunStart, now: () => number = Date.now) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#now = now;
    const at = now();
    this.#record = { runId: `${start.jobId}#${start.attempt}`, ...start, startedAt: at, outcome: 'running', marks: [] };
  }

  get record(): RunRecord {
    return this.#record;
  }

  #write(index: 'start' | 'end' | null): Promise<void> {
    const record = this.#record;
    const key = runKey(this.#prefix, record.runId);
    this.#chain = this.#chain
      .catch(() => undefined)
      .then(async () => {
        const m = this.#redis.multi().set(key, JSON.stringify(record), 'PX', runRetentionMs);
        if (index === 'start') {
          m.zadd(runsKey(this.#prefix), record.startedAt, record.runId).zremrangebyscore(runsKey(this.#prefix), '-inf', record.startedAt - runRetentionMs);
        }
        if (index === 'end' && record.endedAt !== undefined) {
          m.zadd(doneKey(this.#prefix), record.endedAt, record.runId).zremrangebyscore(doneKey(this.#prefix), '-inf', record.endedAt - runRetentionMs);
        }
        await m.exec();
      });
    return this.#chain;
  }

  begin(): Promise<void> {
    return this.#write('start');
  }

  /** A step began; repeated marks of the same step and artifact are ignored. */
  mark(step: RunStep, artifact?: string): Promise<void> {
    const id = `${step} ${artifact ?? ''}`;
    if (id === this.#lastStep && step !== 'upload-retry') return this.#chain;
    this.#lastStep = id;
    this.#record = { ...this.#record, marks: [...this.#record.marks, { step, at: this.#now(), ...(artifact ? { artifact } : {}) }] };
    return this.#write(null);
  }

  /** The manifest is stored: the backup exists, whatever the after-backup tasks do. */
  committed(backup: NonNullable<RunRecord['backup']>): Promise<void> {
    this.#record = { ...this.#record, outcome: 'ok', backup };
    return this.#write(null);
  }

  verified(ok: boolean): Promise<void> {
    this.#record = { ...this.#record, verify: { ok } };
    return this.#write(null);
  }

  end(outcome: Exclude<RunOutcome, 'running'>, error?: { code: string; message: string }): Promise<void> {
    this.#record = { ...this.#record, outcome, endedAt: this.#now(), ...(error ? { error: { code: error.code, message: error.message.slice(0, 2000) } } : {}) };
    return this.#write('end');
  }
}

function parseRun(raw: string | null): RunRecord | null {
  if (raw === null) return null;
  try {
    return JSON.parse(raw) as RunRecord;
  } catch {
    return null;
  }
}

/** Reads the run records. */
export class RunHistory {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  async #read(ids: readonly string[]): Promise<RunRecord[]> {
    const out: RunRecord[] = [];
    for (let i = 0; i < ids.length; i += 500) {
      const batch = ids.slice(i, i + 500);
      const raws = await this.#redis.mget(...batch.map((id) => runKey(this.#prefix, id)));
      for (const raw of raws) {
        const run = parseRun(raw);
        if (run) out.push(run);
      }
    }
    return out;
  }

  /** Runs that started in [from, to), oldest first. */
  async startedBetween(from: number, to: number): Promise<RunRecord[]> {
    const ids = await this.#redis.zrangebyscore(runsKey(this.#prefix), from, `(${to}`);
    return this.#read(ids);
  }

  /** The newest `count` runs that started, oldest first. */
  async latest(count: number): Promise<RunRecord[]> {
    const ids = await this.#redis.zrange(runsKey(this.#prefix), String(-count), '-1');
    return this.#read(ids);
  }

  /** Runs that ended at or after `since` (epoch ms), oldest first, with their end times. */
  async endedSince(since: number): Promise<RunRecord[]> {
    const ids = await this.#redis.zrangebyscore(doneKey(this.#prefix), since, '+inf');
    return this.#read(ids);
  }

  async get(runId: string): Promise<RunRecord | null> {
    return parseRun(await this.#redis.get(runKey(this.#prefix, runId)));
  }
}
