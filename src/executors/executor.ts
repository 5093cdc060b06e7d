import type { Readable, Writable } from 'node:stream';

/**
 * Runs an appliance's commands: locally, over SSH, or inside a container. Every executor passes
 * the contract suite in test/executors/contract.ts.
 *
 * Contract:
 * - `run` executes `command` with a POSIX shell (bash where available) on the appliance.
 * - stdout is streamed into `options.stdout` when given (never buffered whole: dumps are GBs);
 *   otherwise it is collected, up to `maxCollectBytes` (1 MiB), and returned.
 * - stderr is not returned whole: the last `stderrTailBytes` (8 KiB) are kept for error messages.
 * - A non-zero exit rejects with CommandFailedError (code COMMAND_FAILED) quoting the stderr tail,
 *   unless `check: false`, in which case the exit code is returned.
 * - `timeoutMs` kills the command and rejects with CommandTimeoutError (COMMAND_TIMEOUT).
 * - `signal` aborting kills the command and rejects with AbortedError (ABORTED).
 * - The promise settles only after `options.stdout` has been ended (`end: true`, default) or,
 *   with `endStdout: false`, after the last byte was written to it.
 * - `stdin`, when given, is piped to the command (used to put files onto the appliance).
 * - Connection problems reject with a BackupError whose code starts with the executor kind
 *   (SSH_…, DOCKER_…); permanent ones (auth refused, host key mismatch, no such container)
 *   have `permanent: true`.
 * - `close` releases connections; the executor may be used again afterwards (it reconnects).
 */
export interface RunOptions {
  readonly stdout?: Writable;
  /** End `stdout` when the command ends (default true). */
  readonly endStdout?: boolean;
  readonly stdin?: Readable;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Reject on a non-zero exit (default true). */
  readonly check?: boolean;
}

export interface RunResult {
  readonly exitCode: number;
  /** Collected stdout when `options.stdout` was not given; '' otherwise. */
  readonly stdout: string;
  readonly stderrTail: string;
  readonly durationMs: number;
}

export interface Executor {
  readonly kind: 'local' | 'ssh' | 'docker';
  /** Where commands run, for logs and manifests ("ssh root@vc1.example:22"); never secrets. */
  readonly description: string;
  run(command: string, options?: RunOptions): Promise<RunResult>;
  close(): Promise<void>;
}

export const maxCollectBytes = 1024 * 1024;
export const stderrTailBytes = 8 * 1024;
