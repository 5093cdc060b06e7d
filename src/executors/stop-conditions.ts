import { constants } from 'node:os';
import { AbortedError, CommandFailedError, CommandTimeoutError, describeCommand } from '../errors.ts';
import { throwIfAborted as throwIfSignalled } from '../abort.ts';
import type { RunOptions, RunResult } from './executor.ts';

/** Why a command was stopped before it ended by itself. */
export type StopReason =
  | { readonly kind: 'timeout'; readonly timeoutMs: number }
  | { readonly kind: 'abort'; readonly reason: unknown }
  | { readonly kind: 'failure'; readonly error: unknown };

/**
 * Watches a run's timeout and AbortSignal and calls `stop` once, with the first reason that
 * fires. Every executor uses it, so timeouts and cancellation mean the same everywhere.
 */
export class StopConditions {
  #reason: StopReason | undefined;
  readonly #stop: (reason: StopReason) => void;
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = (): void => this.trigger({ kind: 'abort', reason: this.#signal?.reason });

  constructor(options: RunOptions, stop: (reason: StopReason) => void) {
    this.#stop = stop;
    this.#signal = options.signal;
    const timeoutMs = options.timeoutMs;
    if (timeoutMs !== undefined && timeoutMs > 0 && Number.isFinite(timeoutMs)) {
      this.#timer = setTimeout(() => this.trigger({ kind: 'timeout', timeoutMs }), timeoutMs);
    }
    this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  get reason(): StopReason | undefined {
    return this.#reason;
  }

  trigger(reason: StopReason): void {
    if (this.#reason) return;
    this.#reason = reason;
    this.#stop(reason);
  }

  dispose(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#signal?.removeEventListener('abort', this.#onAbort);
  }
}

/** Rejects before starting anything when the run is already cancelled. */
export function throwIfAborted(command: string, signal: AbortSignal | undefined): void {
  throwIfSignalled(signal, `\`${describeCommand(command)}\``);
}

export interface Ending {
  readonly command: string;
  readonly options: RunOptions;
  /** Exit code, or null when the command was killed by a signal. */
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stderrTail: string;
  readonly stopped: StopReason | undefined;
  readonly startedAt: number;
  readonly stdout: string;
}

/** Turns how a command ended into the contract's result or error. */
export function settleRun(ending: Ending): RunResult {
  const { command, options, stopped, stderrTail } = ending;
  if (stopped?.kind === 'failure') throw stopped.error;
  if (stopped?.kind === 'timeout') throw new CommandTimeoutError(command, stopped.timeoutMs, stderrTail);
  if (stopped?.kind === 'abort') throw new AbortedError(`\`${describeCommand(command)}\``, stopped.reason);
  const exitCode = ending.exitCode ?? 128 + signalNumber(ending.signal);
  if (exitCode !== 0 && (options.check ?? true)) {
    throw new CommandFailedError(command, ending.exitCode, stderrTail, { signal: ending.signal });
  }
  return { exitCode, stdout: ending.stdout, stderrTail, durationMs: Math.round(performance.now() - ending.startedAt) };
}

function signalNumber(name: string | null): number {
  if (!name) return 0;
  const bare = name.startsWith('SIG') ? name : `SIG${name}`;
  return (constants.signals as Record<string, number | undefined>)[bare] ?? 0;
}
