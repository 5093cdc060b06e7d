import { PassThrough, Readable, type Duplex } from 'node:stream';
import { finished } from 'node:stream/promises';
import type Docker from 'dockerode';
import type { ExecutorSettings } from '../config/load.ts';
import { BackupError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import { DockerDemux } from './docker-demux.ts';
import type { Executor, RunOptions, RunResult } from './executor.ts';
import { isBrokenPipe, StderrTail, streamStdout } from './output.ts';
import { killCommand, parsePidPreamble, remoteCommand, type PidPreamble } from './remote-wrapper.ts';
import { settleRun, StopConditions, throwIfAborted } from './stop-conditions.ts';

type DockerExecutorConfig = Extract<ExecutorSettings, { type: 'docker' }>;

/** Where the Docker engine is: a unix socket or tcp://host:port. Default $DOCKER_HOST, then /var/run/docker.sock. */
export interface DockerEngineSettings {
  readonly socketPath?: string;
  readonly host?: string;
}

export interface DockerExecutorOptions {
  /** How long a stopped command gets between SIGTERM and SIGKILL (default 3000 ms). */
  readonly killGraceMs?: number;
}

interface DockerApiError extends Error {
  statusCode?: number;
  code?: string;
}

let dockerode: Promise<typeof Docker> | undefined;

/**
 * A client for the engine. dockerode (and the gRPC stack it brings) is loaded on first use: it
 * costs about 0.4 s of CPU, and most processes (a worker of an ssh or local fleet, every CLI
 * command) never talk to Docker.
 */
async function dockerClient(engine: DockerEngineSettings = {}): Promise<Docker> {
  const Docker = await (dockerode ??= import('dockerode').then((m) => m.default));
  if (engine.host) {
    if (engine.host.startsWith('unix://')) return new Docker({ socketPath: engine.host.slice('unix://'.length) });
    const url = new URL(engine.host.replace(/^tcp:/, 'http:'));
    return new Docker({ host: url.hostname, port: Number(url.port || 2375), protocol: url.protocol === 'https:' ? 'https' : 'http' });
  }
  if (engine.socketPath) return new Docker({ socketPath: engine.socketPath });
  // docker-modem reads DOCKER_HOST itself and falls back to /var/run/docker.sock.
  return new Docker();
}

function engineName(engine: DockerEngineSettings): string {
  return engine.host ?? engine.socketPath ?? process.env['DOCKER_HOST'] ?? 'unix:///var/run/docker.sock';
}

/** Turns Docker API failures into errors that say what to do. */
function dockerError(err: unknown, container: string, engine: DockerEngineSettings, action: string): BackupError {
  if (err instanceof BackupError) return err;
  const e = err as DockerApiError;
  if (e.statusCode === 404 && /no such container/i.test(e.message)) {
    return new BackupError('DOCKER_NO_CONTAINER', `there is no container named "${container}" on the Docker engine at ${engineName(engine)}; check executor.container in fleet.yaml against \`docker ps -a\``, {
      permanent: true,
      cause: err,
    });
  }
  if (e.statusCode === 409 && /not running|paused|restarting/i.test(e.message)) {
    return notRunning(container, /is paused/i.test(e.message) ? 'paused' : 'not running');
  }
  if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT' || e.code === 'EACCES' || e.code === 'ETIMEDOUT' || e.code === 'EHOSTUNREACH') {
    return new BackupError('DOCKER_UNREACHABLE', `cannot reach the Docker engine at ${engineName(engine)} (${e.code}) to ${action}; is dockerd running, and may this user use its socket?`, { cause: err });
  }
  return new BackupError('DOCKER_API_FAILED', `Docker refused to ${action} in container "${container}": ${e.message.trim()}`, { cause: err });
}

function notRunning(container: string, state: string): BackupError {
  return new BackupError('DOCKER_NOT_RUNNING', `container "${container}" is ${state}; start it with \`docker start ${container}\` (or \`docker unpause ${container}\`) and retry`);
}

/**
 * Runs commands inside a container with `docker exec`: containerised appliances and the
 * simulated fleet. Commands run under the same wrapper as over SSH, which reports the command's
 * pid so that a timeout or a cancellation can kill it with a second exec (closing the exec's
 * stream does not stop the process).
 */
export class DockerExecutor implements Executor {
  readonly kind = 'docker' as const;
  readonly description: string;
  readonly #container: string;
  readonly #user: string | undefined;
  readonly #engine: DockerEngineSettings;
  #docker: Promise<Docker> | undefined;
  readonly #logger: Logger;
  readonly #killGraceMs: number;

  constructor(settings: DockerExecutorConfig | ({ container: string; user?: string } & DockerEngineSettings), logger: Logger = silentLogger, options: DockerExecutorOptions = {}) {
    this.#container = settings.container;
    this.#user = settings.user;
    this.#engine = { ...(settings.socketPath ? { socketPath: settings.socketPath } : {}), ...(settings.host ? { host: settings.host } : {}) };
    this.#logger = logger.child({ executor: 'docker', container: settings.container });
    this.#killGraceMs = options.killGraceMs ?? 3000;
    this.description = `docker ${settings.container}`;
  }

  async run(command: string, options: RunOptions = {}): Promise<RunResult> {
    throwIfAborted(command, options.signal);
    const startedAt = performance.now();
    const container = (await this.#client()).getContainer(this.#container);
    const tail = new StderrTail();
    const preamble = parsePidPreamble(tail);
    let stream: Duplex | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    let giveUp: () => void = () => undefined;
    const stops = new StopConditions(options, () => {
      killTimer = this.#stopCommand(preamble, () => giveUp());
    });
    preamble.onPid = () => {
      if (stops.reason) killTimer = this.#stopCommand(preamble, () => giveUp());
    };

    try {
      let exec: Docker.Exec;
      try {
        exec = await container.exec({
          Cmd: ['/bin/sh', '-c', remoteCommand(command, { watchParent: false })],
          AttachStdout: true,
          AttachStderr: true,
          AttachStdin: options.stdin !== undefined,
          Tty: false,
          ...(this.#user ? { User: this.#user } : {}),
        });
        stream = (await exec.start({ hijack: true, stdin: options.stdin !== undefined }));
      } catch (err) {
        throw dockerError(err, this.#container, this.#engine, 'run a command');
      }
      if (stops.reason) {
        // Stopped while the exec was being created: it may not have reported its pid yet.
        killTimer ??= this.#stopCommand(preamble, () => giveUp());
      }
      const socket = stream;
      const ended = new Promise<void>((resolve) => {
        giveUp = () => {
          socket.destroy();
          resolve();
        };
        socket.once('close', () => resolve());
        socket.once('end', () => resolve());
      });
      socket.on('error', (err: unknown) => {
        if (!isBrokenPipe(err)) stops.trigger({ kind: 'failure', error: dockerError(err, this.#container, this.#engine, 'read the command output') });
      });
      const demux = new DockerDemux((chunk) => preamble.push(chunk));
      socket.pipe(demux);
      // stdout through a stream of its own, which a failed destination's pipeline destroys: the
      // demux goes on reading stderr, whose first line is the pid that stopping the command
      // needs. Docker does not order stdout and stderr frames, so the pid may come after the
      // first stdout bytes, and with them the failure.
      const stdoutStream = new PassThrough();
      // Its failures reach us through streamStdout's pipeline; a late write into it once it was
      // destroyed must not become an unhandled 'error'.
      stdoutStream.on('error', () => undefined);
      const stdout = streamStdout(demux.pipe(stdoutStream), options);
      const stdoutDone = stdout.done.catch((err: unknown) => {
        demux.discardStdout();
        stops.trigger({ kind: 'failure', error: err });
      });
      if (options.stdin) {
        const stdin = options.stdin;
        stdin.once('error', (err) => stops.trigger({ kind: 'failure', error: err }));
        stdin.pipe(socket);
      }

      await ended;
      if (!demux.writableEnded) demux.end();
      await stdoutDone;
      preamble.flush();
      const exitCode = await this.#exitCode(exec);
      return settleRun({ command, options, exitCode, signal: null, stderrTail: tail.toString(), stopped: stops.reason, startedAt, stdout: stdout.collected() });
    } catch (err) {
      if (stops.reason && stops.reason.kind !== 'failure' && !(err instanceof BackupError && err.code.startsWith('DOCKER_'))) {
        return settleRun({ command, options, exitCode: null, signal: null, stderrTail: tail.toString(), stopped: stops.reason, startedAt, stdout: '' });
      }
      throw err;
    } finally {
      stops.dispose();
      if (killTimer) clearTimeout(killTimer);
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** The exec's exit code; Docker may report it a moment after the stream ended. */
  async #exitCode(exec: Docker.Exec): Promise<number | null> {
    for (let attempt = 0; ; attempt++) {
      let info: Docker.ExecInspectInfo;
      try {
        info = await exec.inspect();
      } catch (err) {
        throw dockerError(err, this.#container, this.#engine, 'read the exit code');
      }
      if (!info.Running) return info.ExitCode;
      if (attempt >= 100) return null;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Kills the command's process group with a second exec: TERM, then KILL, then stop waiting. */
  #stopCommand(preamble: PidPreamble, giveUp: () => void): NodeJS.Timeout {
    const signalGroup = (signal: 'TERM' | 'KILL'): void => {
      const pid = preamble.pid;
      if (pid === undefined) return;
      void this.#execQuiet(killCommand(pid, signal)).catch((err: unknown) =>
        this.#logger.warn({ err: { message: (err as Error).message }, pid }, 'could not stop a command in the container'),
      );
    };
    signalGroup('TERM');
    return setTimeout(() => {
      signalGroup('KILL');
      setTimeout(giveUp, this.#killGraceMs).unref();
    }, this.#killGraceMs);
  }

  #client(): Promise<Docker> {
    return (this.#docker ??= dockerClient(this.#engine));
  }

  async #execQuiet(command: string): Promise<void> {
    const exec = await (await this.#client()).getContainer(this.#container).exec({ Cmd: ['/bin/sh', '-c', command], AttachStdout: false, AttachStderr: false, ...(this.#user ? { User: this.#user } : {}) });
    const response: unknown = await exec.start({ Detach: true });
    // A detached start still answers with a stream; left unread it keeps a socket open.
    if (response instanceof Readable) {
      response.resume();
      await finished(response).catch(() => undefined);
    }
  }
}

/** Whether the container is running (false when it exists but is stopped). */
export async function containerRunning(name: string, engine: DockerEngineSettings = {}): Promise<boolean> {
  try {
    const info = await (await dockerClient(engine)).getContainer(name).inspect();
    return info.State.Running && !info.State.Paused;
  } catch (err) {
    throw dockerError(err, name, engine, 'inspect the container');
  }
}

/** Starts a container; already running is fine. */
export async function startContainer(name: string, engine: DockerEngineSettings = {}): Promise<void> {
  try {
    await (await dockerClient(engine)).getContainer(name).start();
  } catch (err) {
    if ((err as DockerApiError).statusCode === 304) return;
    throw dockerError(err, name, engine, 'start the container');
  }
}

/**
 * Stops a container (SIGTERM, then SIGKILL after `timeoutSeconds`) and returns the undo that
 * starts it again, for the caller's `finally`. Already stopped is fine, and then the undo does
 * nothing: it was not this step that stopped it.
 */
export async function stopContainer(name: string, engine: DockerEngineSettings = {}, timeoutSeconds = 30): Promise<() => Promise<void>> {
  try {
    await (await dockerClient(engine)).getContainer(name).stop({ t: timeoutSeconds });
  } catch (err) {
    if ((err as DockerApiError).statusCode === 304) return () => Promise.resolve();
    throw dockerError(err, name, engine, 'stop the container');
  }
  return () => startContainer(name, engine);
}
