import type { Client, ClientChannel } from 'ssh2';
import type { Logger } from '../log.ts';
import type { RunOptions, RunResult } from './executor.ts';
import { isBrokenPipe, StderrTail, streamStdout } from './output.ts';
import { killCommand, parsePidPreamble, type PidPreamble } from './remote-wrapper.ts';
import { channelExit, execQuiet } from './ssh-channel.ts';
import { sshConnectionLost, sshShellUnsupported } from './ssh-errors.ts';
import { settleRun, StopConditions } from './stop-conditions.ts';

/** What a run needs from its executor. */
export interface SshRunContext {
  /** "ssh root@vc01:22", for messages. */
  readonly description: string;
  readonly user: string;
  readonly logger: Logger;
  /** How long a stopped command gets between SIGTERM and SIGKILL. */
  readonly killGraceMs: number;
  /** Waits for one of the connection's sessions; resolves with the function that gives it back. */
  readonly acquireSession: () => Promise<() => void>;
  /** Opens an exec channel for the (wrapped) command. */
  readonly open: () => Promise<{ client: Client; channel: ClientChannel }>;
}

/** A command whose channel is open. */
interface Started {
  readonly client: Client;
  readonly channel: ClientChannel;
  readonly preamble: PidPreamble;
}

/** Internal: the run was stopped while it waited for a session or a channel. */
const stoppedBeforeStart = new Error('stopped before the command started');

/**
 * One command on the appliance, from waiting for a session to its exit. Its state lives here,
 * one object per run, so that the two ways a run ends early — stopped (timeout, abort, a failed
 * stdout destination) before it started, or after — each find what they need:
 *
 *   waiting ─ stop → settled as stopped, nothing ran
 *      │ session + channel
 *   started ─ stop → kill the process group (TERM, then KILL), then drop the channel
 *      │ channel closed
 *   settled (exit status, or SSH_CONNECTION_LOST when none came back)
 */
export class SshRun {
  readonly #command: string;
  readonly #options: RunOptions;
  readonly #context: SshRunContext;
  readonly #startedAt = performance.now();
  readonly #tail = new StderrTail();
  readonly #stops: StopConditions;
  /** While waiting: rejects the wait with `stoppedBeforeStart`. */
  #interruptWait: (() => void) | undefined;
  #started: Started | undefined;
  /** Ends the wait for the channel to close, when even SIGKILL did not close it. */
  #giveUpOnChannel: () => void = () => undefined;
  #killTimer: NodeJS.Timeout | undefined;

  constructor(command: string, options: RunOptions, context: SshRunContext) {
    this.#command = command;
    this.#options = options;
    this.#context = context;
    this.#stops = new StopConditions(options, () => {
      this.#interruptWait?.();
      this.#killRemote();
    });
  }

  async execute(): Promise<RunResult> {
    let release: (() => void) | undefined;
    try {
      try {
        const acquiring = this.#context.acquireSession();
        release = await this.#untilStopped(acquiring).catch((err: unknown) => {
          // The session comes later: give it back then.
          if (err === stoppedBeforeStart) void acquiring.then((late) => late());
          throw err;
        });
        const opened = await this.#untilStopped(this.#context.open());
        this.#started = { ...opened, preamble: parsePidPreamble(this.#tail) };
      } catch (err) {
        if (err !== stoppedBeforeStart) throw err;
        return this.#settle(null, '');
      }
      this.#interruptWait = undefined;
      return await this.#supervise(this.#started);
    } finally {
      this.#stops.dispose();
      if (this.#killTimer) clearTimeout(this.#killTimer);
      release?.();
    }
  }

  /** Waits for `promise` unless the run is stopped first. */
  #untilStopped<T>(promise: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#interruptWait = () => reject(stoppedBeforeStart);
      promise.then(resolve, reject);
    });
  }

  async #supervise(started: Started): Promise<RunResult> {
    const { channel, preamble } = started;
    const closed = new Promise<void>((resolve) => {
      this.#giveUpOnChannel = resolve;
      channel.once('close', () => resolve());
    });
    // Stopped before the wrapper reported its process group: kill as soon as it does.
    preamble.onPid = () => {
      if (this.#stops.reason) this.#killRemote();
    };
    channel.stderr.on('data', (chunk: Buffer) => preamble.push(chunk));
    channel.on('error', (err: unknown) => {
      // Writes after the command closed its stdin; the exit status tells the rest.
      if (!isBrokenPipe(err)) this.#context.logger.debug({ err: { message: (err as Error).message } }, 'channel error');
    });
    const stdout = streamStdout(channel, this.#options);
    const stdoutDone = stdout.done.catch((err: unknown) => {
      // The pipe to the failed destination is gone: drain the rest so the channel can close.
      channel.resume();
      this.#stops.trigger({ kind: 'failure', error: err });
    });
    const { stdin } = this.#options;
    if (stdin) {
      stdin.once('error', (err) => this.#stops.trigger({ kind: 'failure', error: err }));
      stdin.pipe(channel);
    } else {
      channel.end();
    }

    await closed;
    await stdoutDone;
    preamble.flush();
    const exit = channelExit(channel);
    const stopped = this.#stops.reason;
    const lost = exit === undefined && (stopped === undefined || (stopped.kind === 'failure' && isBrokenPipe(stopped.error)));
    if (lost) throw sshConnectionLost(this.#command, this.#context.description, this.#tail.toString());
    if (exit !== undefined && exit.code !== 0 && stopped === undefined && preamble.pid === undefined) {
      throw sshShellUnsupported(this.#context.user, this.#context.description, this.#tail.toString());
    }
    return this.#settle(exit ?? null, stdout.collected());
  }

  #settle(exit: { code: number | null; signal: string | null } | null, stdout: string): RunResult {
    return settleRun({
      command: this.#command,
      options: this.#options,
      exitCode: exit?.code ?? null,
      signal: exit?.signal ?? null,
      stderrTail: this.#started ? this.#tail.toString() : '',
      stopped: this.#stops.reason,
      startedAt: this.#startedAt,
      stdout,
    });
  }

  /**
   * Kills the command's process group on the appliance: TERM, then KILL, then drop the channel.
   * Called again when the process group becomes known after the stop (until then only the
   * channel could be signalled), which restarts the escalation from that TERM.
   */
  #killRemote(): void {
    const started = this.#started;
    if (!started) return;
    if (this.#killTimer) clearTimeout(this.#killTimer);
    const { client, channel, preamble } = started;
    const signalGroup = (signal: 'TERM' | 'KILL'): void => {
      const pid = preamble.pid;
      if (pid === undefined) {
        try {
          channel.signal(signal);
        } catch {
          // the channel may already be closed
        }
        return;
      }
      void execQuiet(client, killCommand(pid, signal)).catch((err: unknown) =>
        this.#context.logger.warn({ err: { message: (err as Error).message }, pid }, 'could not stop a remote command'),
      );
    };
    signalGroup('TERM');
    this.#killTimer = setTimeout(() => {
      signalGroup('KILL');
      setTimeout(() => {
        channel.close();
        this.#giveUpOnChannel();
      }, this.#context.killGraceMs).unref();
    }, this.#context.killGraceMs);
  }
}
