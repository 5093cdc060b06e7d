import { Client, type ClientChannel, type ConnectConfig } from 'ssh2';
import type { SshExecutorConfig } from '../config/load.ts';
import { BackupError, describeCommand } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { Executor, RunOptions, RunResult } from './executor.ts';
import { hostKeyFingerprint, hostKeyType, knownHostKeys, sameFingerprint } from './host-key.ts';
import { isBrokenPipe, StderrTail, streamStdout } from './output.ts';
import { killCommand, parsePidPreamble, remoteCommand, type PidPreamble } from './remote-wrapper.ts';
import { Slots } from './slots.ts';
import { settleRun, StopConditions, throwIfAborted } from './stop-conditions.ts';

export interface SshExecutorOptions {
  /** How long a stopped command gets between SIGTERM and SIGKILL (default 3000 ms). */
  readonly killGraceMs?: number;
  /**
   * Commands running at once on the one connection. OpenSSH allows 10 sessions per connection
   * (MaxSessions); two stay free for the `kill` that stops a command on timeout.
   */
  readonly maxConcurrent?: number;
}

interface Exit {
  readonly code: number | null;
  readonly signal: string | null;
}

/** Internal: the run was stopped while it waited for a slot or a connection. */
const stoppedBeforeStart = new Error('stopped before the command started');

/**
 * Runs commands on an appliance over SSH. One connection is opened on first use and shared by
 * every run (reopened when it drops); the host key is pinned. Each command runs under a small
 * wrapper (see remote-wrapper.ts) that reports its process group, so that a timeout or a
 * cancellation kills the whole command on the appliance instead of just closing the channel.
 */
export class SshExecutor implements Executor {
  readonly kind = 'ssh' as const;
  readonly description: string;
  readonly #settings: SshExecutorConfig;
  readonly #logger: Logger;
  readonly #killGraceMs: number;
  readonly #slots: Slots;
  #connection: { promise: Promise<Client>; client?: Client } | undefined;

  constructor(settings: SshExecutorConfig, logger: Logger = silentLogger, options: SshExecutorOptions = {}) {
    this.#settings = settings;
    this.#logger = logger.child({ executor: 'ssh', host: settings.host, port: settings.port });
    this.#killGraceMs = options.killGraceMs ?? 3000;
    this.#slots = new Slots(options.maxConcurrent ?? 8);
    this.description = `ssh ${settings.user}@${settings.host}:${settings.port}`;
  }

  async run(command: string, options: RunOptions = {}): Promise<RunResult> {
    throwIfAborted(command, options.signal);
    const startedAt = performance.now();
    const tail = new StderrTail();
    let interruptStart: (() => void) | undefined;
    let started: { client: Client; channel: ClientChannel; preamble: PidPreamble } | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    /** Stops waiting for a channel that a kill could not close. */
    let giveUp: () => void = () => undefined;
    const stops = new StopConditions(options, () => {
      interruptStart?.();
      if (started) killTimer = this.#stopRemote(started.client, started.channel, started.preamble, () => giveUp());
    });
    const untilStopped = <T>(promise: Promise<T>): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        interruptStart = () => reject(stoppedBeforeStart);
        promise.then(resolve, reject);
      });

    let release: (() => void) | undefined;
    try {
      try {
        const acquiring = this.#slots.acquire();
        release = await untilStopped(acquiring).catch((err: unknown) => {
          if (err === stoppedBeforeStart) void acquiring.then((late) => late());
          throw err;
        });
        const channel = await untilStopped(this.#open(command));
        started = { ...channel, preamble: parsePidPreamble(tail) };
      } catch (err) {
        if (err !== stoppedBeforeStart) throw err;
        return settleRun({ command, options, exitCode: null, signal: null, stderrTail: '', stopped: stops.reason, startedAt, stdout: '' });
      }
      interruptStart = undefined;
      const { channel, preamble } = started;
      const closed = new Promise<void>((resolve) => {
        giveUp = resolve;
        channel.once('close', () => resolve());
      });
      preamble.onPid = () => {
        if (stops.reason && started) killTimer = this.#stopRemote(started.client, channel, preamble, () => giveUp());
      };
      channel.stderr.on('data', (chunk: Buffer) => preamble.push(chunk));
      channel.on('error', (err: unknown) => {
        // Writes after the command closed its stdin; the exit status tells the rest.
        if (!isBrokenPipe(err)) this.#logger.debug({ err: { message: (err as Error).message } }, 'channel error');
      });
      const stdout = streamStdout(channel, options);
      const stdoutDone = stdout.done.catch((err: unknown) => {
        // The pipe to the failed destination is gone: drain the rest so the channel can close.
        channel.resume();
        stops.trigger({ kind: 'failure', error: err });
      });
      if (options.stdin) {
        const stdin = options.stdin;
        stdin.once('error', (err) => stops.trigger({ kind: 'failure', error: err }));
        stdin.pipe(channel);
      } else {
        channel.end();
      }

      await closed;
      await stdoutDone;
      preamble.flush();
      const exit = channelExits.get(channel);
      const stopped = stops.reason;
      const lost = exit === undefined && (stopped === undefined || (stopped.kind === 'failure' && isBrokenPipe(stopped.error)));
      if (lost) {
        throw new BackupError(
          'SSH_CONNECTION_LOST',
          `the SSH connection to ${this.description} was lost while \`${describeCommand(command)}\` ran; the job will retry. Check the network and the appliance's sshd if this repeats.`,
          { details: { stderrTail: tail.toString() } },
        );
      }
      if (exit !== undefined && exit.code !== 0 && stopped === undefined && preamble.pid === undefined) {
        // The wrapper's first line never ran: the login shell is not a POSIX shell.
        throw new BackupError(
          'SSH_SHELL_UNSUPPORTED',
          `the login shell of ${this.#settings.user} on ${this.description} did not run a POSIX shell command (it said: ${tail.toString().trim().slice(-300) || 'nothing'}). ` +
            'vcsa-backup needs bash or sh as that user\'s login shell; on VCSA 6.x run `shell` and then `chsh -s /bin/bash root` on the appliance.',
          { permanent: true },
        );
      }
      return settleRun({ command, options, exitCode: exit?.code ?? null, signal: exit?.signal ?? null, stderrTail: tail.toString(), stopped, startedAt, stdout: stdout.collected() });
    } finally {
      stops.dispose();
      if (killTimer) clearTimeout(killTimer);
      release?.();
    }
  }

  async close(): Promise<void> {
    const pending = this.#connection;
    this.#connection = undefined;
    if (!pending) return;
    let client: Client;
    try {
      client = await pending.promise;
    } catch {
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        client.destroy();
        resolve();
      }, 5000);
      client.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      client.end();
    });
  }

  /** Opens an exec channel, reconnecting once if the shared connection turns out to be dead. */
  async #open(command: string): Promise<{ client: Client; channel: ClientChannel }> {
    const wrapped = remoteCommand(command);
    for (let attempt = 1; ; attempt++) {
      const client = await this.#connect();
      try {
        return { client, channel: await execChannel(client, wrapped) };
      } catch (err) {
        // ssh2's words for "the socket is gone"; the close event may not have reached us yet.
        const dead = /Not connected|No response from server/.test((err as Error).message);
        if (dead) this.#forget(client);
        if (attempt === 1 && dead) continue;
        throw new BackupError('SSH_EXEC_FAILED', `could not start a command on ${this.description}: ${(err as Error).message}`, { cause: err, details: { dead } });
      }
    }
  }

  #connect(): Promise<Client> {
    if (this.#connection) return this.#connection.promise;
    const promise = this.#openConnection().then((client) => {
      connection.client = client;
      return client;
    });
    const connection: { promise: Promise<Client>; client?: Client } = { promise };
    this.#connection = connection;
    connection.promise.catch(() => {
      if (this.#connection === connection) this.#connection = undefined;
    });
    return connection.promise;
  }

  #forget(client: Client): void {
    if (this.#connection?.client === client) this.#connection = undefined;
    client.destroy();
  }

  async #openConnection(): Promise<Client> {
    const s = this.#settings;
    const verifier = await this.#hostKeyPolicy();
    const config: ConnectConfig = {
      host: s.host,
      port: s.port,
      username: s.user,
      readyTimeout: s.connectTimeoutSeconds * 1000,
      keepaliveInterval: s.keepaliveSeconds * 1000,
      keepaliveCountMax: 3,
      hostVerifier: verifier.verify,
      tryKeyboard: s.password !== undefined,
      ...(verifier.algorithms ? { algorithms: { serverHostKey: verifier.algorithms as NonNullable<NonNullable<ConnectConfig['algorithms']>['serverHostKey']> } } : {}),
      ...(s.privateKey ? { privateKey: s.privateKey.reveal() } : {}),
      ...(s.passphrase ? { passphrase: s.passphrase.reveal() } : {}),
      ...(s.password ? { password: s.password.reveal() } : {}),
      ...(s.agent ? { agent: this.#agentSocket(s.agent) } : {}),
    };
    const client = new Client();
    return new Promise<Client>((resolve, reject) => {
      let ready = false;
      client.on('keyboard-interactive', (_name, _instructions, _lang, prompts, finish) => {
        // Appliances that take passwords through PAM ask for them this way.
        finish(prompts.map(() => s.password?.reveal() ?? ''));
      });
      client.on('ready', () => {
        ready = true;
        this.#logger.debug('connected');
        resolve(client);
      });
      client.on('error', (err: Error & { level?: string; code?: string }) => {
        if (ready) {
          this.#logger.warn({ err: { message: err.message, level: err.level } }, 'SSH connection error');
          return;
        }
        reject(this.#connectError(err, verifier.mismatch()));
      });
      client.on('close', () => {
        if (ready && this.#connection?.client === client) this.#connection = undefined;
        if (!ready) reject(this.#connectError(Object.assign(new Error('connection closed during the handshake'), { level: 'client-socket' }), verifier.mismatch()));
      });
      try {
        client.connect(config);
      } catch (err) {
        reject(new BackupError('SSH_KEY_INVALID', `executor.privateKey for ${this.description} cannot be used: ${(err as Error).message}; check the key file and its passphrase`, { permanent: true }));
      }
    });
  }

  #agentSocket(agent: string | true): string {
    if (typeof agent === 'string') return agent;
    const sock = process.env['SSH_AUTH_SOCK'];
    if (!sock) {
      throw new BackupError('SSH_AUTH_FAILED', `executor.agent is true for ${this.description} but SSH_AUTH_SOCK is not set; start ssh-agent or give the socket path`, { permanent: true });
    }
    return sock;
  }

  async #hostKeyPolicy(): Promise<{ verify: (key: Buffer) => boolean; mismatch: () => string | undefined; algorithms?: string[] }> {
    const s = this.#settings;
    let mismatch: string | undefined;
    if (s.hostKey) {
      const pinned = s.hostKey;
      return {
        verify: (key) => {
          const actual = hostKeyFingerprint(key);
          if (sameFingerprint(actual, pinned)) return true;
          mismatch =
            `the host key of ${this.description} does not match the pinned one: expected ${pinned}, the appliance presented ` +
            `${hostKeyType(key)} ${actual}. Nothing was run. If the appliance was reinstalled or its keys regenerated, check the new ` +
            `fingerprint on its console (\`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub\`) and, if it matches ${actual}, put it in ` +
            `hostKey in fleet.yaml. Otherwise someone may be intercepting the connection.`;
          return false;
        },
        mismatch: () => mismatch,
      };
    }
    if (!s.knownHosts) {
      throw new BackupError('SSH_HOST_KEY_UNKNOWN', `no hostKey or knownHosts for ${this.description}; pin the appliance's key in fleet.yaml`, { permanent: true });
    }
    const path = s.knownHosts;
    let keys;
    try {
      keys = await knownHostKeys(path, s.host, s.port);
    } catch (err) {
      throw new BackupError('SSH_KNOWN_HOSTS_UNREADABLE', `cannot read knownHosts file ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'}) for ${this.description}`, { permanent: true });
    }
    const trusted = keys.filter((k) => !k.revoked);
    if (trusted.length === 0) {
      throw new BackupError(
        'SSH_HOST_KEY_UNKNOWN',
        `${path} has no key for ${s.port === 22 ? s.host : `[${s.host}]:${s.port}`}; add the appliance's key after checking its fingerprint on the console (\`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub\`), or set hostKey in fleet.yaml`,
        { permanent: true },
      );
    }
    // Offer only the algorithms we hold a key for, as OpenSSH does, so the server presents one we know.
    const algorithms = [...new Set(trusted.flatMap((k) => (k.type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [k.type])))].filter((a) => supportedHostKeyAlgorithms.has(a));
    return {
      verify: (key) => {
        if (keys.some((k) => k.revoked && k.blob.equals(key))) {
          mismatch = `the host key of ${this.description} (${hostKeyFingerprint(key)}) is marked @revoked in ${path}. Nothing was run.`;
          return false;
        }
        if (trusted.some((k) => k.blob.equals(key))) return true;
        mismatch =
          `the host key of ${this.description} does not match ${path}: expected ${trusted.map((k) => `${k.type} ${hostKeyFingerprint(k.blob)}`).join(' or ')}, ` +
          `the appliance presented ${hostKeyType(key)} ${hostKeyFingerprint(key)}. Nothing was run. If the appliance was reinstalled, check the new ` +
          `fingerprint on its console (\`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub\`) and replace its line in ${path}.`;
        return false;
      },
      mismatch: () => mismatch,
      ...(algorithms.length > 0 ? { algorithms } : {}),
    };
  }

  #connectError(err: Error & { level?: string; code?: string }, mismatch: string | undefined): BackupError {
    if (mismatch) return new BackupError('SSH_HOST_KEY_MISMATCH', mismatch, { permanent: true });
    if (err instanceof BackupError) return err;
    const s = this.#settings;
    if (err.level === 'client-authentication' || err.level === 'agent') {
      const methods = [s.privateKey && 'private key', s.agent && 'ssh-agent', s.password && 'password'].filter(Boolean).join(', ');
      return new BackupError(
        'SSH_AUTH_FAILED',
        `${this.description} refused authentication as ${s.user} (tried: ${methods || 'none'}; ${err.message}). Check executor.privateKey/password/agent in fleet.yaml and the user's authorized_keys on the appliance.`,
        { permanent: true },
      );
    }
    if (err.level === 'client-timeout') {
      return new BackupError('SSH_UNREACHABLE', `${this.description} did not answer within ${s.connectTimeoutSeconds} s; check that the appliance is up and port ${s.port} is reachable`);
    }
    if (err.level === 'client-socket' || err.level === 'client-dns') {
      return new BackupError('SSH_UNREACHABLE', `cannot connect to ${this.description}${err.code ? ` (${err.code})` : ''}: ${err.message}; check that the appliance is up and sshd listens on port ${s.port}`);
    }
    return new BackupError('SSH_HANDSHAKE_FAILED', `SSH handshake with ${this.description} failed: ${err.message}`);
  }

  /** Kills the command's process group on the appliance: TERM, then KILL, then drop the channel. */
  #stopRemote(client: Client, channel: ClientChannel, preamble: PidPreamble, giveUp: () => void): NodeJS.Timeout {
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
        this.#logger.warn({ err: { message: (err as Error).message }, pid }, 'could not stop a remote command'),
      );
    };
    signalGroup('TERM');
    return setTimeout(() => {
      signalGroup('KILL');
      setTimeout(() => {
        channel.close();
        giveUp();
      }, this.#killGraceMs).unref();
    }, this.#killGraceMs);
  }
}

const supportedHostKeyAlgorithms = new Set([
  'ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa', 'ssh-dss',
]);

/**
 * Exit statuses, recorded from the moment a channel opens: when the exit-status arrives in the
 * same read as the exec's confirmation, ssh2 emits 'exit' before an awaiting caller could listen.
 */
const channelExits = new WeakMap<ClientChannel, Exit>();

function execChannel(client: Client, command: string): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    try {
      client.exec(command, (err, channel) => {
        if (err) {
          reject(err);
          return;
        }
        channel.on('exit', (code: number | null, signal?: string) => channelExits.set(channel, { code, signal: signal ?? null }));
        resolve(channel);
      });
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

/** Runs a short helper command (a `kill`) and ignores its output. */
async function execQuiet(client: Client, command: string): Promise<void> {
  const channel = await execChannel(client, command);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      channel.close();
      resolve();
    }, 10_000);
    channel.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    channel.resume();
    channel.stderr.resume();
    channel.end();
  });
}

/**
 * Reads the fingerprint of the key that host:port presents, without authenticating, for a
 * deliberate "trust this new key" step after an appliance was reinstalled.
 */
export async function fetchHostKeyFingerprint(host: string, port = 22, timeoutMs = 20_000): Promise<{ fingerprint: string; keyType: string }> {
  const client = new Client();
  let seen: Buffer | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      client.on('error', (err) => (seen ? resolve() : reject(err)));
      client.on('close', () => (seen ? resolve() : reject(new Error('connection closed before the host key was seen'))));
      client.connect({
        host,
        port,
        username: 'vcsa-backup-probe',
        readyTimeout: timeoutMs,
        hostVerifier: (key: Buffer) => {
          seen = key;
          return false;
        },
      });
    });
  } catch (err) {
    throw new BackupError('SSH_UNREACHABLE', `cannot read the host key of ${host}:${port}: ${(err as Error).message}`, { cause: err });
  } finally {
    client.destroy();
  }
  if (!seen) throw new BackupError('SSH_UNREACHABLE', `${host}:${port} did not present a host key`);
  return { fingerprint: hostKeyFingerprint(seen), keyType: hostKeyType(seen) };
}
