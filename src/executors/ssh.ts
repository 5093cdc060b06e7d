import type { Client, ClientChannel, ConnectConfig } from 'ssh2';
import type { SshExecutorConfig } from '../config/load.ts';
import { BackupError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { Executor, RunOptions, RunResult } from './executor.ts';
import { hostKeyFingerprint, hostKeyType } from './host-key.ts';
import { remoteCommand } from './remote-wrapper.ts';
import { SessionLimit } from './session-limit.ts';
import { execChannel } from './ssh-channel.ts';
import { sshAgentMissing, sshConnectError, sshExecFailed, sshKeyInvalid, type Ssh2Error } from './ssh-errors.ts';
import { hostKeyPolicy } from './ssh-host-key-policy.ts';
import { SshRun } from './ssh-run.ts';
import { throwIfAborted } from './stop-conditions.ts';
import { ssh2 } from './ssh2-module.ts';

export interface SshExecutorOptions {
  /** How long a stopped command gets between SIGTERM and SIGKILL (default 3000 ms). */
  readonly killGraceMs?: number;
  /**
   * Commands running at once on the one connection. OpenSSH allows 10 sessions per connection
   * (MaxSessions); two stay free for the `kill` that stops a command on timeout.
   */
  readonly maxConcurrent?: number;
}

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
  readonly #sessions: SessionLimit;
  #connection: { promise: Promise<Client>; client?: Client } | undefined;

  constructor(settings: SshExecutorConfig, logger: Logger = silentLogger, options: SshExecutorOptions = {}) {
    this.#settings = settings;
    this.#logger = logger.child({ executor: 'ssh', host: settings.host, port: settings.port });
    this.#killGraceMs = options.killGraceMs ?? 3000;
    this.#sessions = new SessionLimit(options.maxConcurrent ?? 8);
    this.description = `ssh ${settings.user}@${settings.host}:${settings.port}`;
  }

  async run(command: string, options: RunOptions = {}): Promise<RunResult> {
    throwIfAborted(command, options.signal);
    const run = new SshRun(command, options, {
      description: this.description,
      user: this.#settings.user,
      logger: this.#logger,
      killGraceMs: this.#killGraceMs,
      acquireSession: () => this.#sessions.acquire(),
      open: () => this.#open(command),
    });
    return run.execute();
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
        throw sshExecFailed(err, this.description, dead);
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
    const verifier = await hostKeyPolicy(s, this.description);
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
    const client = new (ssh2().Client)();
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
      client.on('error', (err: Ssh2Error) => {
        if (ready) {
          this.#logger.warn({ err: { message: err.message, level: err.level } }, 'SSH connection error');
          return;
        }
        reject(sshConnectError(err, s, this.description, verifier.mismatch()));
      });
      client.on('close', () => {
        if (ready && this.#connection?.client === client) this.#connection = undefined;
        if (!ready) reject(sshConnectError(Object.assign(new Error('connection closed during the handshake'), { level: 'client-socket' }), s, this.description, verifier.mismatch()));
      });
      try {
        client.connect(config);
      } catch (err) {
        reject(sshKeyInvalid(err, this.description));
      }
    });
  }

  #agentSocket(agent: string | true): string {
    if (typeof agent === 'string') return agent;
    const sock = process.env['SSH_AUTH_SOCK'];
    if (!sock) throw sshAgentMissing(this.description);
    return sock;
  }
}

/**
 * Reads the fingerprint of the key that host:port presents, without authenticating, for a
 * deliberate "trust this new key" step after an appliance was reinstalled.
 */
export async function fetchHostKeyFingerprint(host: string, port = 22, timeoutMs = 20_000): Promise<{ fingerprint: string; keyType: string }> {
  const client = new (ssh2().Client)();
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
