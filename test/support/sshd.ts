/**
 * A real OpenSSH server for tests: Debian's sshd on a free loopback port, with throwaway host
 * and user keys in a temp dir. scripts/test-setup.sh installs openssh-server.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const sshdBinary = '/usr/sbin/sshd';

export interface Sshd {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** "SHA256:…" of the host key, as `ssh-keygen -lf` prints it. */
  readonly hostKeyFingerprint: string;
  /** The host key line for a known_hosts file ("[127.0.0.1]:PORT ssh-ed25519 AAAA…"). */
  readonly knownHostsLine: string;
  readonly privateKeyPath: string;
  readonly privateKey: string;
  readonly dir: string;
  /** Kills the processes serving open connections; the listener stays up. */
  dropSessions(): Promise<void>;
  /** Stops the listener and every session (for "server down" tests); `start` brings it back on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops everything and removes the temp dir. */
  cleanup(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function makeKeyPair(dir: string, name: string): Promise<{ privateKeyPath: string; privateKey: string; publicKey: string }> {
  const privateKeyPath = join(dir, name);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', privateKeyPath]);
  return { privateKeyPath, privateKey: await readFile(privateKeyPath, 'utf8'), publicKey: await readFile(`${privateKeyPath}.pub`, 'utf8') };
}

/** Whether something accepts TCP connections on the loopback port. */
export function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Pids whose parent is `pid`, recursively. */
async function descendants(pid: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // exited while we looked
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const child of children.get(p) ?? []) {
      out.push(child);
      walk(child);
    }
  };
  walk(pid);
  return out;
}

/** `extraConfig`: more sshd_config lines (e.g. a ForceCommand that plays a non-POSIX login shell). */
export async function startSshd(options: { extraConfig?: readonly string[] } = {}): Promise<Sshd> {
  if (!existsSync(sshdBinary)) {
    throw new Error(`${sshdBinary} is missing: run scripts/test-setup.sh (it installs openssh-server)`);
  }
  // sshd insists on its privilege separation directory.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const dir = await mkdtemp(join(tmpdir(), 'vcsa-backup-sshd-'));
  const port = await freePort();
  const hostKey = join(dir, 'host_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test-host', '-f', hostKey]);
  const user = await makeKeyPair(dir, 'user_ed25519');
  await writeFile(join(dir, 'authorized_keys'), user.publicKey, { mode: 0o600 });
  const { stdout: fingerprintLine } = await run('ssh-keygen', ['-lf', `${hostKey}.pub`]);
  const hostKeyFingerprint = fingerprintLine.split(' ')[1] ?? '';
  const [keyType, keyBlob] = (await readFile(`${hostKey}.pub`, 'utf8')).split(' ');
  const config = join(dir, 'sshd_config');
  await writeFile(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PermitRootLogin yes',
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'MaxSessions 10',
      'MaxStartups 50',
      'LogLevel ERROR',
      ...(options.extraConfig ?? []),
      '',
    ].join('\n'),
  );

  let server: ChildProcess | undefined;
  let log = '';
  const start = async (): Promise<void> => {
    const child = spawn(sshdBinary, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    server = child;
    child.stderr?.on('data', (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-4000);
    });
    const deadline = Date.now() + 10_000;
    while (!(await portAccepts(port))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`sshd did not start on port ${port}: ${log}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };
  const dropSessions = async (): Promise<void> => {
    if (!server?.pid) return;
    for (const pid of await descendants(server.pid)) {
      try {
        // Only sshd's own processes: the commands they ran are what the test watches.
        const comm = (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
        if (comm === 'sshd') process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  const stop = async (): Promise<void> => {
    const child = server;
    if (!child || child.exitCode !== null) return;
    await dropSessions();
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
    server = undefined;
  };
  await start();
  return {
    host: '127.0.0.1',
    port,
    hostKeyFingerprint,
    knownHostsLine: `[127.0.0.1]:${port} ${keyType} ${keyBlob}`,
    privateKeyPath: user.privateKeyPath,
    privateKey: user.privateKey,
    dir,
    dropSessions,
    stop,
    start,
    cleanup: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
