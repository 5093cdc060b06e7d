/**
 * A Docker engine and a small base image for tests, from a clean machine: starts dockerd when no
 * engine answers, and builds `vcsa-backup-test-base:bookworm` with debootstrap (no image
 * registry is reachable; Debian's mirror is). Both are cached: the image stays in the engine.
 * scripts/test-setup.sh runs this file once before the tests (`node --import tsx
 * test/support/dockerd.ts`), so test files running in parallel find everything ready; a file
 * lock covers test files run on their own.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync } from 'node:fs';
import { mkdtemp, open, readdir, readFile, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';

export const testImage = 'vcsa-backup-test-base:bookworm';
const socketPath = '/var/run/docker.sock';
const lockPath = join(tmpdir(), 'vcsa-backup-docker-setup.lock');
export const dockerdLogPath = join(tmpdir(), 'vcsa-backup-dockerd.log');

const say = (message: string): void => {
  process.stderr.write(`dockerd-support: ${message}\n`);
};

export function testDocker(): Docker {
  return new Docker({ socketPath });
}

async function engineAnswers(): Promise<boolean> {
  if (!existsSync(socketPath)) return false;
  try {
    await testDocker().ping();
    return true;
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs `work` holding the lock file at `path`, one process at a time; a lock left by a dead
 * process is taken over.
 */
export async function withFileLock<T>(path: string, timeoutMs: number, work: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const handle = await open(path, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (!holder || !alive(holder)) {
        await unlink(path).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) throw new Error(`lock ${path} held by pid ${holder} for ${Math.round(timeoutMs / 60_000)} minutes`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  try {
    return await work();
  } finally {
    await unlink(path).catch(() => undefined);
  }
}

async function startDockerd(): Promise<void> {
  const binary = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((p) => existsSync(p));
  if (!binary) throw new Error('dockerd is not installed: run scripts/test-setup.sh (it installs docker.io)');
  // A pid file left by a dockerd that died makes the next one refuse to start.
  const pidFile = '/var/run/docker.pid';
  if (existsSync(pidFile)) {
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    if (!pid || !alive(pid)) await unlink(pidFile).catch(() => undefined);
  }
  say(`starting ${binary} --bridge=none --iptables=false (log: ${dockerdLogPath})`);
  const log = openSync(dockerdLogPath, 'a');
  const child = spawn(binary, ['--bridge=none', '--iptables=false', '--ip-forward=false', '--ip-masq=false'], { detached: true, stdio: ['ignore', log, log] });
  child.unref();
  const deadline = Date.now() + 90_000;
  while (!(await engineAnswers())) {
    if (child.exitCode !== null) throw new Error(`dockerd exited with ${child.exitCode}; see ${dockerdLogPath}`);
    if (Date.now() > deadline) throw new Error(`dockerd did not answer on ${socketPath} within 90 s; see ${dockerdLogPath}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  say('dockerd is up');
}

/** The Debian mirror apt uses here (debootstrap needs the same one). */
async function debianMirror(): Promise<string> {
  const texts: string[] = [];
  for (const file of ['/etc/apt/sources.list', ...(await readdir('/etc/apt/sources.list.d').catch(() => [] as string[])).map((f) => `/etc/apt/sources.list.d/${f}`)]) {
    if (file.endsWith('.list') || file.endsWith('.sources')) texts.push(await readFile(file, 'utf8').catch(() => ''));
  }
  for (const text of texts) {
    const oneLine = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(text);
    if (oneLine?.[1]) return oneLine[1];
    for (const stanza of text.split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
      if (uri && /^Suites:.*\bbookworm\b(?!-)/m.test(stanza)) return uri;
    }
  }
  return 'http://deb.debian.org/debian';
}

function runQuiet(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${stderr}`))));
  });
}

async function buildTestImage(docker: Docker): Promise<void> {
  if (!existsSync('/usr/sbin/debootstrap')) throw new Error('debootstrap is not installed: run scripts/test-setup.sh');
  const mirror = await debianMirror();
  const dir = await mkdtemp(join(tmpdir(), 'vcsa-backup-rootfs-'));
  try {
    say(`building ${testImage}: debootstrap --variant=minbase bookworm from ${mirror} (about a minute)`);
    await runQuiet('debootstrap', ['--variant=minbase', 'bookworm', dir, mirror]);
    // Package caches and docs only make the image bigger.
    for (const sub of ['var/cache/apt/archives', 'var/lib/apt/lists', 'usr/share/doc', 'usr/share/man', 'usr/share/info']) {
      await rm(join(dir, sub), { recursive: true, force: true });
    }
    say(`importing the root filesystem as ${testImage}`);
    const tar = spawn('tar', ['-C', dir, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [repo, tag] = testImage.split(':');
    const progress = await docker.importImage(tar.stdout, { repo, tag, changes: ['CMD ["/bin/bash"]'] } as Record<string, unknown>);
    await new Promise<void>((resolve, reject) => docker.modem.followProgress(progress, (err: Error | null) => (err ? reject(err) : resolve())));
    await docker.getImage(testImage).inspect();
    say(`${testImage} is ready`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function imageExists(docker: Docker): Promise<boolean> {
  try {
    await docker.getImage(testImage).inspect();
    return true;
  } catch {
    return false;
  }
}

/** Makes sure an engine answers on /var/run/docker.sock and the test image exists. */
export async function ensureDockerForTests(): Promise<Docker> {
  const docker = testDocker();
  if ((await engineAnswers()) && (await imageExists(docker))) return docker;
  await withFileLock(lockPath, 10 * 60_000, async () => {
    if (!(await engineAnswers())) await startDockerd();
    if (!(await imageExists(docker))) await buildTestImage(docker);
  });
  return docker;
}

export interface TestContainer {
  readonly name: string;
  remove(): Promise<void>;
}

/**
 * A container of the test image with no network. `start: false` leaves it created but not
 * running. `docker-init` is PID 1 so that `docker stop` is quick.
 */
export async function startTestContainer(options: { start?: boolean; cmd?: string[] } = {}): Promise<TestContainer> {
  const docker = await ensureDockerForTests();
  const name = `vcsa-backup-test-${randomBytes(5).toString('hex')}`;
  const container = await docker.createContainer({
    name,
    Image: testImage,
    Cmd: options.cmd ?? ['sleep', 'infinity'],
    HostConfig: { NetworkMode: 'none', Init: true },
  });
  if (options.start ?? true) await container.start();
  return {
    name,
    remove: async () => {
      await container.remove({ force: true }).catch((err: { statusCode?: number }) => {
        if (err.statusCode !== 404) throw err;
      });
    },
  };
}

if (import.meta.url === `file://${process.argv[1] ?? ''}`) {
  await ensureDockerForTests();
  say(`engine on ${socketPath} and ${testImage} ready`);
}
