import { PassThrough, Writable } from 'node:stream';
import { BackupError, errorMessage } from '../errors.ts';
import type { Executor, RunResult } from '../executors/executor.ts';
import type { DumpSpec } from '../profiles/profile.ts';
import { snapshotIdPattern } from '../profiles/render.ts';

/**
 * A snapshot exported by a transaction that is still open on the appliance. PostgreSQL keeps an
 * exported snapshot importable only while its transaction lasts, so the session (a psql on the
 * appliance, over the executor: a local process, an SSH channel, a `docker exec` with stdin)
 * stays open from the stop until the dump that reads it is done.
 */
export interface HeldSnapshot {
  /** The dump (database) it belongs to: "vcdb". */
  readonly dump: string;
  /** pg_export_snapshot()'s id, for `pg_dump --snapshot`. */
  readonly id: string;
  /** Ends the transaction and waits for the session to exit. Idempotent. */
  close(): Promise<void>;
}

/** The first line a command prints, as soon as it is printed; the rest is drained. */
class FirstLine extends Writable {
  #text = '';
  #done = false;
  readonly line: Promise<string>;
  #resolve: (line: string) => void = () => undefined;

  constructor() {
    super();
    this.line = new Promise((resolve) => (this.#resolve = resolve));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (!this.#done) {
      this.#text += chunk.toString('utf8');
      const newline = this.#text.indexOf('\n');
      if (newline >= 0) {
        this.#done = true;
        this.#resolve(this.#text.slice(0, newline).trim());
      } else if (this.#text.length > 4096) {
        this.#done = true;
        this.#resolve(this.#text.slice(0, 200));
      }
    }
    callback();
  }
}

export interface ExportOptions {
  /** How long the session may stay open: the stop, the start and the dump. */
  readonly timeoutMs: number;
  /** How long to wait for the snapshot id once the session is opened. */
  readonly exportTimeoutMs: number;
}

/**
 * Opens the dump's snapshot session and exports a snapshot: `BEGIN ISOLATION LEVEL REPEATABLE
 * READ, READ ONLY; SELECT pg_export_snapshot();`. Call it while the services are stopped: the
 * snapshot is the database as the stop left it. Rejects with SNAPSHOT_EXPORT_FAILED (the
 * session closed) when no snapshot came back.
 */
export async function exportHeldSnapshot(executor: Executor, dump: DumpSpec, options: ExportOptions): Promise<HeldSnapshot> {
  const spec = dump.snapshot;
  if (!spec) throw new Error(`dump ${dump.name} has no snapshot mode`);
  const stdin = new PassThrough();
  const out = new FirstLine();
  // Not the caller's signal: closing is ours to do, after the dump (or on failure, in finally).
  const session = executor.run(spec.session, { stdin, stdout: out, timeoutMs: options.timeoutMs });
  const ended: Promise<RunResult | Error> = session.then(
    (r) => r,
    (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
  );
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      // COMMIT of a read-only transaction changes nothing; EOF ends psql.
      if (!stdin.writableEnded) stdin.end('COMMIT;\n');
      const result = await ended;
      if (result instanceof Error) throw result;
    })();
    return closing;
  };
  const fail = async (why: string, cause?: unknown): Promise<never> => {
    stdin.end();
    await ended;
    throw new BackupError('SNAPSHOT_EXPORT_FAILED', `exporting a snapshot of the ${dump.name} database on ${executor.description} failed: ${why}`, cause === undefined ? {} : { cause });
  };

  stdin.write('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\nSELECT pg_export_snapshot();\n');
  let timer: NodeJS.Timeout | undefined;
  const first = await Promise.race([
    out.line.then((line) => ({ line })),
    ended.then((result) => ({ result })),
    new Promise<{ timedOut: true }>((resolve) => (timer = setTimeout(() => resolve({ timedOut: true }), options.exportTimeoutMs))),
  ]).finally(() => clearTimeout(timer));
  if ('timedOut' in first) return fail(`no answer within ${Math.round(options.exportTimeoutMs / 1000)} s`);
  if ('result' in first) {
    const { result } = first;
    return fail(result instanceof Error ? errorMessage(result) : `the session ended (exit ${result.exitCode}) without a snapshot id`, result instanceof Error ? result : undefined);
  }
  if (!snapshotIdPattern.test(first.line)) return fail(`expected a snapshot id from pg_export_snapshot(), got ${JSON.stringify(first.line.slice(0, 120))}`);
  return { dump: dump.name, id: first.line, close };
}
