/**
 * Private Redis processes for the tests that stop, restart or fail over Redis: Debian's
 * redis-server on free loopback ports, each in its own directory, with an append-only file so
 * data survives a clean restart as in production. Sentinels are the same binary in sentinel
 * mode (what Debian's redis-sentinel runs).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { freePort } from './fleet.ts';
import { waitFor } from './poll.ts';

export interface RedisServerOptions {
  /** Extra `redis-server` arguments (e.g. `--replicaof`, TLS, ACL files). */
  readonly args?: readonly string[];
  /** How the readiness probe connects (TLS, user). */
  readonly probe?: RedisOptions;
  /** No plain TCP port: the server listens on TLS only and `port` is its TLS port. */
  readonly tlsOnly?: boolean;
}

export class RedisServer {
  #child: ChildProcess | undefined;
  #exited: Promise<unknown> | undefined;

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly options: RedisServerOptions,
  ) {}

  static async create(dir: string, options: RedisServerOptions = {}): Promise<RedisServer> {
    const port = await freePort();
    const server = new RedisServer(port, join(dir, `redis-${port}`), options);
    await mkdir(server.dir, { recursive: true });
    await server.start();
    return server;
  }

  get url(): string {
    return `${this.options.tlsOnly ? 'rediss' : 'redis'}://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** `extraArgs` for this start only (e.g. `--replicaof` for an old primary that comes back as a replica). */
  async start(extraArgs: readonly string[] = []): Promise<void> {
    const portArgs = this.options.tlsOnly ? ['--port', '0', '--tls-port', String(this.port)] : ['--port', String(this.port)];
    const child = spawn(
      'redis-server',
      [...portArgs, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', this.dir, ...(this.options.args ?? []), ...extraArgs],
      { stdio: 'ignore' },
    );
    this.#child = child;
    this.#exited = once(child, 'exit');
    await waitForPing(`redis-server on ${this.port}`, { host: '127.0.0.1', port: this.port, ...this.options.probe }, () => this.running);
  }

  /** SIGTERM: the append-only file is flushed, then the server exits. */
  async shutdown(): Promise<void> {
    if (!this.running) return;
    this.#child?.kill('SIGTERM');
    this.#child?.kill('SIGCONT'); // a paused server would never see the SIGTERM
    await this.#exited;
  }

  /** SIGKILL: whatever was not yet written is lost (a crash). */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.#child?.kill('SIGKILL');
    await this.#exited;
  }

  /** SIGSTOP: the process stays, answers nothing (a replica that stops acknowledging). */
  pause(): void {
    if (this.running) this.#child?.kill('SIGSTOP');
  }

  resume(): void {
    if (this.running) this.#child?.kill('SIGCONT');
  }

  async restart(): Promise<void> {
    await this.shutdown();
    await this.start();
  }
}

/** A sentinel (redis-server --sentinel) watching `primaryPort` as group `name`. */
export class RedisSentinel {
  #child: ChildProcess | undefined;
  #exited: Promise<unknown> | undefined;

  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  static async create(dir: string, name: string, primaryPort: number, options: { downAfterMs?: number; failoverTimeoutMs?: number } = {}): Promise<RedisSentinel> {
    const port = await freePort();
    const sentinel = new RedisSentinel(port, join(dir, `sentinel-${port}`));
    await mkdir(sentinel.dir, { recursive: true });
    const conf = join(sentinel.dir, 'sentinel.conf');
    await writeFile(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${sentinel.dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${primaryPort} 2`,
        `sentinel down-after-milliseconds ${name} ${options.downAfterMs ?? 1000}`,
        `sentinel failover-timeout ${name} ${options.failoverTimeoutMs ?? 5000}`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    );
    sentinel.#child = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
    sentinel.#exited = once(sentinel.#child, 'exit');
    await waitForPing(`sentinel on ${port}`, { host: '127.0.0.1', port }, () => sentinel.#child?.exitCode === null);
    return sentinel;
  }

  async shutdown(): Promise<void> {
    if (!this.#child || this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.kill('SIGTERM');
    await this.#exited;
  }
}

async function waitForPing(what: string, options: RedisOptions, alive: () => boolean): Promise<void> {
  const { replyMapping: _none, ...rest } = options;
  const probe = new Redis({ ...rest, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => undefined);
  try {
    await waitFor(`${what} to accept connections`, async () => {
      if (!alive()) throw new Error(`${what} exited at start`);
      try {
        if (probe.status !== 'ready') await probe.connect();
        return (await probe.ping()) === 'PONG';
      } catch {
        probe.disconnect();
        return false;
      }
    }, 15_000);
  } finally {
    probe.disconnect();
  }
}
