/**
 * Container images for the docker tests, built from local files (no image registry is
 * reachable here) and cached by content hash, so a warm run builds nothing:
 * - `debian:bookworm-slim` and `node:24-bookworm-slim`: local stand-ins for the public images
 *   that appliance/Dockerfile and Dockerfile start FROM, made only when missing (a machine with
 *   the public images uses those). The Debian one is dockerd.ts's debootstrap image under that
 *   name; the Node one adds to it a real Node.js 24 from the npm registry's `node` package
 *   (node24.ts) and this machine's npm, with the official image's `node` user.
 * - `vcsa-backup-sim-appliance:<hash>`: the simulated VCSA 5.5, by appliance/build.sh.
 * - `vcsa-backup:<hash>`: the repository's Dockerfile.
 * - `vcsa-backup-local-redis:<hash>`: Debian's redis-server (deploy/local/redis.Dockerfile), the
 *   stand-in for the public redis image in docker-compose.local.yml.
 * Builds take a lock file, so test files running in parallel build each image once.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureDockerForTests, testDocker, testImage, withFileLock } from './dockerd.ts';
import { ensureNode24 } from './node24.ts';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const debianBaseImage = 'debian:bookworm-slim';
export const nodeBaseImage = 'node:24-bookworm-slim';
export const applianceImageName = 'vcsa-backup-sim-appliance';
export const appImageName = 'vcsa-backup';
export const localRedisImageName = 'vcsa-backup-local-redis';

const say = (message: string): void => {
  process.stderr.write(`images: ${message}\n`);
};

/** Runs a command; rejects with the tail of its output. Returns stdout. */
export function runCommand(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd ?? repoRoot, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      output = (output + chunk.toString()).slice(-6000);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-6000);
    });
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`${command} ${args.join(' ')} exited with ${code}:\n${output}`))));
  });
}

async function imageId(name: string): Promise<string | undefined> {
  try {
    return (await testDocker().getImage(name).inspect()).Id;
  } catch {
    return undefined;
  }
}

/** One builder of `name` at a time across processes. */
function withLock<T>(name: string, work: () => Promise<T>): Promise<T> {
  return withFileLock(join(tmpdir(), `vcsa-backup-image-${name}.lock`), 15 * 60_000, work);
}

/** The classic builder: Debian's docker.io has no buildx plugin, so BuildKit is not available. */
async function buildEnv(): Promise<NodeJS.ProcessEnv> {
  try {
    await runCommand('docker', ['buildx', 'version']);
    return process.env;
  } catch {
    return { ...process.env, DOCKER_BUILDKIT: '0' };
  }
}

/** `debian:bookworm-slim`, or the debootstrap test image under that name when it is missing. */
export async function ensureDebianBase(): Promise<string> {
  await ensureDockerForTests();
  if (await imageId(debianBaseImage)) return debianBaseImage;
  await withLock('debian-base', async () => {
    if (await imageId(debianBaseImage)) return;
    say(`no ${debianBaseImage}: tagging ${testImage} (debootstrap --variant=minbase bookworm) as it`);
    await testDocker().getImage(testImage).tag({ repo: 'debian', tag: 'bookworm-slim' });
  });
  return debianBaseImage;
}

/**
 * The CA bundle this machine trusts, when it names one: a TLS-intercepting proxy in front of
 * the npm registry needs it inside the build too. The stand-in carries it; the Dockerfile
 * stays as it is for machines with the public image.
 */
async function hostCaBundle(): Promise<string | undefined> {
  for (const path of [process.env['NODE_EXTRA_CA_CERTS'], '/etc/ssl/certs/ca-certificates.crt']) {
    if (path && (await stat(path).catch(() => undefined))?.isFile()) return path;
  }
  return undefined;
}

const standInLabel = 'vcsa-backup.stand-in';

/** `node:24-bookworm-slim`, or a stand-in: the Debian base plus Node.js 24 from the npm registry and this machine's npm. */
export async function ensureNodeBase(): Promise<string> {
  await ensureDebianBase();
  const node = await ensureNode24();
  const nodeVersion = (await runCommand(node, ['--version'])).trim();
  const npmDir = join(dirname(dirname(process.execPath)), 'lib', 'node_modules', 'npm');
  const ca = await hostCaBundle();
  const dockerfile = [
    `FROM ${debianBaseImage}`,
    'COPY node /usr/local/bin/node',
    'COPY npm /usr/local/lib/node_modules/npm',
    ...(ca ? ['COPY ca.crt /usr/local/share/vcsa-backup-stand-in/ca.crt', 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/vcsa-backup-stand-in/ca.crt'] : []),
    // As in the official image: npm and npx on PATH, a `node` user with uid 1000.
    'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\',
    ' && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\',
    ' && groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \\',
    ' && node --version && npm --version',
    `ENV NODE_VERSION=${nodeVersion.slice(1)}`,
    'CMD ["node"]',
    '',
  ].join('\n');
  const recipe = createHash('sha256').update(dockerfile).update(ca ? await readFile(ca) : '').digest('hex').slice(0, 16);
  const current = async (): Promise<boolean> => {
    try {
      const labels = (await testDocker().getImage(nodeBaseImage).inspect()).Config.Labels ?? {};
      // The public image has no such label: use it as it is.
      return labels[standInLabel] === undefined || labels[standInLabel] === recipe;
    } catch {
      return false;
    }
  };
  if (await current()) return nodeBaseImage;
  await withLock('node-base', async () => {
    if (await current()) return;
    await stat(join(npmDir, 'bin', 'npm-cli.js'));
    const context = await mkdtemp(join(tmpdir(), 'vcsa-backup-node-base-'));
    try {
      say(`no ${nodeBaseImage}: making a stand-in from ${debianBaseImage} with ${node} (${nodeVersion}) and ${npmDir}`);
      await cp(node, join(context, 'node'));
      await cp(npmDir, join(context, 'npm'), { recursive: true });
      if (ca) await cp(ca, join(context, 'ca.crt'));
      await writeFile(join(context, 'Dockerfile'), `${dockerfile}LABEL ${standInLabel}=${recipe}\n`);
      await runCommand('docker', ['build', '--network', 'none', '-t', nodeBaseImage, context], { env: await buildEnv() });
    } finally {
      await rm(context, { recursive: true, force: true });
    }
  });
  return nodeBaseImage;
}

/** The simulated VCSA 5.5 image, by appliance/build.sh (which skips the build when its content hash is already tagged). */
export async function ensureApplianceImage(): Promise<string> {
  await ensureDebianBase();
  const started = Date.now();
  const out = await runCommand('bash', [join(repoRoot, 'appliance', 'build.sh')]);
  const tag = out.trim().split('\n').pop() ?? '';
  if (!tag.startsWith(`${applianceImageName}:`)) throw new Error(`appliance/build.sh printed ${JSON.stringify(out)}, expected an image tag`);
  if (Date.now() - started > 5000) say(`${tag} ready in ${Math.round((Date.now() - started) / 1000)} s`);
  return tag;
}

async function filesUnder(path: string): Promise<string[]> {
  const info = await stat(path);
  if (!info.isDirectory()) return [path];
  const out: string[] = [];
  for (const entry of await readdir(path, { withFileTypes: true })) {
    const full = join(path, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(full)));
    else if (entry.isFile() && !entry.name.endsWith('.test.ts')) out.push(full);
  }
  return out;
}

/** What goes into the vcsa-backup image (the Dockerfile's COPY sources), plus the base image. */
async function appContentHash(baseId: string): Promise<string> {
  const hash = createHash('sha256').update(`base ${baseId}\n`);
  const roots = ['Dockerfile', '.dockerignore', 'package.json', 'package-lock.json', 'bin', 'src', 'workers'].map((p) => join(repoRoot, p));
  const files = (await Promise.all(roots.map(filesUnder))).flat().sort();
  for (const file of files) {
    const mode = (await stat(file)).mode & 0o111 ? 'x' : '-';
    hash.update(`${relative(repoRoot, file)} ${mode} ${createHash('sha256').update(await readFile(file)).digest('hex')}\n`);
  }
  return hash.digest('hex').slice(0, 16);
}

/** The repository's Dockerfile, built on the Node base; cached by the hash of what it copies. */
export async function ensureAppImage(): Promise<string> {
  const baseId = await imageId(await ensureNodeBase());
  if (!baseId) throw new Error(`${nodeBaseImage} vanished`);
  const tag = `${appImageName}:${await appContentHash(baseId)}`;
  if (await imageId(tag)) return tag;
  await withLock('app', async () => {
    if (await imageId(tag)) return;
    const started = Date.now();
    say(`building ${tag} from the Dockerfile (npm ci and apt-get over --network host)`);
    await runCommand('docker', ['build', '--network', 'host', '-t', tag, '-t', `${appImageName}:latest`, '.'], { env: await buildEnv() });
    say(`${tag} built in ${Math.round((Date.now() - started) / 1000)} s`);
    // Older content-hash builds no longer match the sources; an image a container still uses stays.
    for (const old of await testDocker().listImages({ filters: { reference: [appImageName] } })) {
      for (const ref of old.RepoTags ?? []) {
        if (/:[0-9a-f]{16}$/.test(ref) && ref !== tag) await testDocker().getImage(ref).remove().catch(() => undefined);
      }
    }
  });
  return tag;
}

/**
 * Redis from Debian's package (deploy/local/redis.Dockerfile) on the Debian base: the public
 * redis image's stand-in in docker-compose.local.yml. Cached by the hash of the Dockerfile and
 * the base image's id.
 */
export async function ensureLocalRedisImage(): Promise<string> {
  const baseId = await imageId(await ensureDebianBase());
  if (!baseId) throw new Error(`${debianBaseImage} vanished`);
  const dockerfile = join(repoRoot, 'deploy', 'local', 'redis.Dockerfile');
  const hash = createHash('sha256').update(`base ${baseId}\n`).update(await readFile(dockerfile)).digest('hex').slice(0, 16);
  const tag = `${localRedisImageName}:${hash}`;
  if (await imageId(tag)) return tag;
  await withLock('local-redis', async () => {
    if (await imageId(tag)) return;
    const started = Date.now();
    say(`building ${tag} from deploy/local/redis.Dockerfile (apt-get over --network host)`);
    await runCommand('docker', ['build', '--network', 'host', '--build-arg', `BASE=${debianBaseImage}`, '-f', dockerfile, '-t', tag, '-t', `${localRedisImageName}:latest`, join(repoRoot, 'deploy', 'local')], { env: await buildEnv() });
    say(`${tag} built in ${Math.round((Date.now() - started) / 1000)} s`);
  });
  return tag;
}

if (import.meta.url === `file://${process.argv[1] ?? ''}`) {
  const which = process.argv.slice(2);
  const wanted = (name: string): boolean => which.length === 0 || which.includes(name);
  // The images share only the Debian base: made once, then the three are built side by side
  // (each build mostly waits on apt and npm; on a fresh machine this saves about a minute).
  await ensureDebianBase();
  const built = await Promise.all([
    wanted('appliance') ? ensureApplianceImage() : null,
    wanted('app') ? ensureAppImage() : null,
    wanted('redis') ? ensureLocalRedisImage() : null,
  ]);
  for (const image of built) if (image !== null) say(image);
}
