import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { BackupError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { Executor, RunOptions, RunResult } from './executor.ts';
import { isBrokenPipe, StderrTail, streamStdout } from './output.ts';
import { settleRun, StopConditions, throwIfAborted } from './stop-conditions.ts';

export interface LocalExecutorSettings {
  /** Shell that runs each command line with `-c` (default /bin/bash). */
  readonly shell?: string;
}

export interface LocalExecutorOptions {
  /** How long a stopped command gets between SIGTERM and SIGKILL (default 3000 ms). */
  readonly killGraceMs?: number;
}

/**
 * Runs commands as child processes of this one: the worker sits on the appliance itself, as in
 * the classic cron setup. Each command gets its own process group so that a timeout or a
 * cancellation kills everything it started (pg_dump under a pipeline, a subshell), not just
 * the shell.
 */
export class LocalExecutor implements Executor {
  readonly kind = 'local' as const;
  readonly description: string;
  readonly #shell: string;
  readonly #killGraceMs: number;
  readonly #logger: Logger;

  constructor(settings: LocalExecutorSettings = {}, logger: Logger = silentLogger, options: LocalExecutorOptions = {}) {
    this.#shell = settings.shell ?? '/bin/bash';
    this.#killGraceMs = options.killGraceMs ?? 3000;
    this.#logger = logger;
    this.description = `local ${this.#shell}`;
  }

  async run(command: string, options: RunOptions = {}): Promise<RunResult> {
    throwIfAborted(command, options.signal);
    const startedAt = performance.now();
    const child = spawn(this.#shell, ['-c', command], {
      detached: true,
      stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    const closed = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
    const spawned = once(child, 'spawn');
    try {
      await spawned;
    } catch (err) {
      await closed.catch(() => undefined);
      throw new BackupError(
        'LOCAL_SPAWN_FAILED',
        `cannot start ${this.#shell} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); check executor.shell in the target's config`,
        { permanent: true, cause: err },
      );
    }
    const pid = child.pid;
    const { stdout: out, stderr: errOut } = child;
    if (!out || !errOut) throw new Error('child process was spawned without stdout/stderr pipes');
    let killTimer: NodeJS.Timeout | undefined;
    const killGroup = (signal: NodeJS.Signals): void => {
      if (pid === undefined) return;
      try {
        process.kill(-pid, signal);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') this.#logger.warn({ err, pid, signal }, 'could not signal a command');
      }
    };
    const stops = new StopConditions(options, (reason) => {
      this.#logger.debug({ pid, reason: reason.kind }, 'stopping command');
      killGroup('SIGTERM');
      killTimer = setTimeout(() => {
        killGroup('SIGKILL');
        // A grandchild that left the group could still hold the pipes open; do not wait for it.
        killTimer = setTimeout(() => {
          out.destroy();
          errOut.destroy();
        }, this.#killGraceMs);
      }, this.#killGraceMs);
    });

    const tail = new StderrTail();
    errOut.on('data', (chunk: Buffer) => tail.push(chunk));
    const stdout = streamStdout(out, options);
    const stdoutDone = stdout.done.catch((err: unknown) => stops.trigger({ kind: 'failure', error: err }));
    if (options.stdin && child.stdin) {
      const stdin = options.stdin;
      pipeline(stdin, child.stdin).catch((err: unknown) => {
        // The command may stop reading early (e.g. `head`); only a failing source is our problem.
        if (!isBrokenPipe(err)) stops.trigger({ kind: 'failure', error: err });
      });
    }
    try {
      const [exitCode, signal] = await closed;
      await stdoutDone;
      return settleRun({ command, options, exitCode, signal, stderrTail: tail.toString(), stopped: stops.reason, startedAt, stdout: stdout.collected() });
    } finally {
      stops.dispose();
      if (killTimer) clearTimeout(killTimer);
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
