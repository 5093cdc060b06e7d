/**
 * `docker compose up` for real: docker-compose.yml with docker-compose.local.yml (the stand-ins
 * for the public Redis, S3 and PostgreSQL images, host networking on 127.0.0.1) starts Redis,
 * S3, the scratch PostgreSQL, three simulated appliances, two workers, the scheduler, the
 * dashboard and the first round (backup-now) from the images test/support/images.ts built.
 * backup-now exits 0, the dashboard's /api/fleet shows a good, verified backup of each
 * appliance, the audit log shows one appliance stopped at a time, and `down -v` leaves no
 * container, volume or network of the project behind.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { allServicesRunningAtEnd, findOverlaps, parseAudit, quiesceIntervals } from '../../src/sim/audit.ts';
import type { FleetView } from '../../src/web/fleet-view.ts';
import { waitFor } from '../support/poll.ts';
import { ensureAppImage, ensureApplianceImage, ensureLocalRedisImage, repoRoot } from '../support/images.ts';
import { dockerCli } from './appliance-container.ts';

const suffix = randomBytes(4).toString('hex');
const project = `vcsa-compose-${suffix}`;
const containerPrefix = `vcsa-compose-sim-${suffix}`;
const appliances = ['vc01', 'vc02', 'vc03'];
const composeFiles = ['-f', join(repoRoot, 'docker-compose.yml'), '-f', join(repoRoot, 'docker-compose.local.yml')];

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Result> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd: repoRoot, env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 127) : 0, stdout, stderr: stderr || (err?.message ?? '') });
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

interface ContainerState {
  readonly Name: string;
  readonly State: { Status: string; ExitCode: number; Health?: { Status: string; FailingStreak: number; Log?: { ExitCode: number; Output: string }[] } };
}

/** One line per container: its state, its health and what its last health check said. */
function describeState(c: ContainerState): string {
  const health = c.State.Health;
  const last = health?.Log?.at(-1);
  const check = health ? ` health=${health.Status} failing=${health.FailingStreak}${last ? ` last check exit ${last.ExitCode}: ${last.Output.trim().slice(0, 200)}` : ''}` : '';
  return `  ${c.Name.replace(/^\//, '')}: ${c.State.Status} (exit ${c.State.ExitCode})${check}`;
}

/** Names of everything Docker holds for the project (by compose's label). */
async function leftovers(kind: 'container' | 'volume' | 'network'): Promise<string[]> {
  const args = kind === 'container' ? ['ps', '-a', '--format', '{{.Names}}'] : [kind, 'ls', '--format', '{{.Name}}'];
  const res = await dockerCli([...args, '--filter', `label=com.docker.compose.project=${project}`]);
  assert.equal(res.exitCode, 0, res.stderr);
  return res.stdout.split('\n').filter(Boolean);
}

void describe('docker compose up (docker-compose.yml + docker-compose.local.yml)', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let dashboardPort: number;
  const token = randomBytes(16).toString('hex');
  let composeCmd: [string, string[]];
  let down: Result | undefined;

  const compose = (args: readonly string[], timeoutMs = 120_000): Promise<Result> => run(composeCmd[0], [...composeCmd[1], ...composeFiles, ...args], env, timeoutMs);
  const logs = async (): Promise<string> => (await compose(['logs', '--no-color', '--tail', '25'])).stdout;
  /**
   * Why `up` failed, shortest first: compose's own error (the end of its output, after the
   * progress lines), each container's state and last health check, then the services' logs.
   */
  const whyUpFailed = async (up: Result): Promise<string> => {
    const error = up.stderr.split('\n').filter((l) => l.trim() && !/\.\.\. *(done)?$/.test(l) && !/^(Creating|Starting) /.test(l));
    const ids = (await compose(['ps', '-a', '-q'])).stdout.split('\n').filter(Boolean);
    const states = ids.length === 0 ? [] : (JSON.parse((await dockerCli(['inspect', ...ids])).stdout || '[]') as ContainerState[]).map(describeState);
    return [`compose up exited ${up.code}:`, ...error.slice(-15), '', 'containers:', ...states, '', await logs()].join('\n');
  };

  before(async () => {
    // Built (and cached by content hash) by scripts/test-setup.sh; warm, these only check.
    const [app, appliance, redis] = await Promise.all([ensureAppImage(), ensureApplianceImage(), ensureLocalRedisImage()]);
    dir = await mkdtemp(join(tmpdir(), 'compose-stack-test-'));
    const [redisPort, s3Port, pgPort, port] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    dashboardPort = port;
    // The shipped fleet file of the local stack, on this run's ports and container names.
    const fleet = parse(await readFile(join(repoRoot, 'deploy', 'fleet.compose.local.yaml'), 'utf8')) as {
      redis: { url: string };
      s3: { endpoint: string };
      verify: { scratchUrl: string };
      targets: { name: string; executor: { container: string } }[];
    };
    fleet.redis.url = `redis://127.0.0.1:${redisPort}`;
    fleet.s3.endpoint = `http://127.0.0.1:${s3Port}`;
    fleet.verify.scratchUrl = `postgres://postgres@127.0.0.1:${pgPort}/postgres`;
    for (const t of fleet.targets) t.executor.container = `${containerPrefix}-${t.name}`;
    const fleetPath = join(dir, 'fleet.yaml');
    await writeFile(fleetPath, stringify(fleet), { mode: 0o644 });
    env = {
      ...process.env,
      COMPOSE_PROJECT_NAME: project,
      VCSA_BACKUP_IMAGE: app,
      VCSA_SIM_APPLIANCE_IMAGE: appliance,
      VCSA_LOCAL_REDIS_IMAGE: redis,
      VCSA_LOCAL_REDIS_PORT: String(redisPort),
      VCSA_LOCAL_S3_PORT: String(s3Port),
      VCSA_LOCAL_PG_PORT: String(pgPort),
      VCSA_LOCAL_DASHBOARD_PORT: String(dashboardPort),
      VCSA_COMPOSE_FLEET: fleetPath,
      VCSA_SIM_CONTAINER_PREFIX: containerPrefix,
      DASHBOARD_TOKEN: token,
    };
    // `docker compose` (v2 plugin) where it exists, else Debian's docker-compose.
    composeCmd = (await run('docker', ['compose', 'version'], env, 30_000)).code === 0 ? ['docker', ['compose']] : ['docker-compose', []];
  });

  after(async () => {
    if (env && !down) await compose(['down', '-v', '--remove-orphans', '--timeout', '5']);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void test('up: backup-now backs up the three appliances, and the dashboard shows three good, verified backups', async () => {
    const started = Date.now();
    // Caps, not measures: on a loaded 2-core machine an appliance's first start can use much of
    // its health check's 300 s start period.
    const up = await compose(['up', '-d', '--no-build'], 420_000);
    if (up.code !== 0) assert.fail(await whyUpFailed(up));
    const upSeconds = Math.round((Date.now() - started) / 1000);
    const containers = await leftovers('container');
    for (const service of ['redis', 's3', 'scratch-postgres', 'worker-1', 'worker-2', 'scheduler', 'dashboard', 'backup-now']) {
      assert.ok(containers.some((c) => c.includes(service)), `a ${service} container among ${containers.join(', ')}`);
    }
    for (const a of appliances) assert.ok(containers.includes(`${containerPrefix}-${a}`), `appliance ${a}'s container`);

    // The first round: `run --wait` in the backup-now service exits 0 when every appliance has a good backup.
    const id = (await compose(['ps', '-q', 'backup-now'])).stdout.trim();
    assert.ok(id, 'backup-now has a container');
    const waited = await dockerCli(['wait', id], { timeoutMs: 300_000 });
    assert.equal(waited.stdout.trim(), '0', `backup-now exited ${waited.stdout.trim()}:\n${await logs()}`);
    const roundSeconds = Math.round((Date.now() - started) / 1000);

    // The dashboard (token from DASHBOARD_TOKEN) shows each appliance's good backup; the restore
    // drill after each backup (verify.afterBackup) reports on its own, so wait for it.
    const api = `http://127.0.0.1:${dashboardPort}/api/fleet`;
    const unauthorized = await fetch(api);
    assert.equal(unauthorized.status, 401, 'without the token');
    const view = await waitFor(
      'three verified backups on /api/fleet',
      async () => {
        const res = await fetch(api, { headers: { authorization: `Bearer ${token}` } });
        if (!res.ok) return undefined;
        const v = (await res.json()) as FleetView;
        return v.targets.every((t) => t.lastGood && t.lastVerify?.id === t.lastGood.id) ? v : undefined;
      },
      240_000,
      500,
    );
    process.stderr.write(`compose-stack: up -d returned after ${upSeconds} s, backup-now exited 0 after ${roundSeconds} s, three verified backups after ${Math.round((Date.now() - started) / 1000)} s\n`);
    assert.deepEqual(view.targets.map((t) => t.name).sort(), appliances);
    for (const t of view.targets) {
      assert.ok(t.lastGood, `${t.name} has a good backup`);
      assert.equal(t.stale, false, `${t.name} is not stale`);
      assert.ok(t.lastGood.bytes > 0, `${t.name}'s backup has bytes`);
      assert.equal(t.lastFailure?.current ?? false, false, `${t.name} is not failing: ${JSON.stringify(t.lastFailure)}`);
      assert.equal(t.lastVerify?.ok, true, `${t.name}'s restore drill: ${t.lastVerify?.message ?? ''}`);
    }

    // One appliance stopped at a time, every service running again (the shared audit log).
    const audit = await dockerCli(['exec', `${containerPrefix}-vc01`, 'cat', '/var/log/vcsa-sim/audit.jsonl']);
    assert.equal(audit.exitCode, 0, audit.stderr);
    const entries = parseAudit(audit.stdout);
    const intervals = quiesceIntervals(entries);
    assert.deepEqual([...new Set(intervals.map((i) => i.appliance))].sort(), appliances);
    assert.deepEqual(findOverlaps(intervals), []);
    assert.equal(allServicesRunningAtEnd(entries), true);
  });

  void test('down -v leaves no container, volume or network of the project', async () => {
    // Anonymous volumes (the images' VOLUMEs) carry no project label: note them first.
    const ids = (await compose(['ps', '-a', '-q'])).stdout.split('\n').filter(Boolean);
    assert.ok(ids.length >= 11, `the stack's containers: ${ids.length}`);
    const inspect = JSON.parse((await dockerCli(['inspect', ...ids])).stdout) as { Mounts: { Type: string; Name?: string }[] }[];
    const volumes = inspect.flatMap((c) => c.Mounts.filter((m) => m.Type === 'volume' && m.Name).map((m) => m.Name as string));
    assert.ok(volumes.length > 0, 'the stack used volumes');

    down = await compose(['down', '-v', '--timeout', '10'], 120_000);
    assert.equal(down.code, 0, `compose down -v: ${down.stderr}`);
    assert.deepEqual(await leftovers('container'), []);
    assert.deepEqual(await leftovers('volume'), []);
    assert.deepEqual(await leftovers('network'), []);
    const remaining = (await dockerCli(['volume', 'ls', '-q'])).stdout.split('\n').filter(Boolean);
    assert.deepEqual(volumes.filter((v) => remaining.includes(v)), [], 'every volume the stack used is gone');
    const byName = await dockerCli(['ps', '-a', '-q', '--filter', `name=${containerPrefix}`]);
    assert.equal(byName.stdout.trim(), '', 'no appliance container by name');
  });
});
