/**
 * docker-compose.yml validates with the Compose tool installed here, and the fleet.yaml it
 * mounts is a valid config whose targets are the stack's appliance containers.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/load.ts';
import { repoRoot } from '../support/images.ts';

interface ComposeService {
  network_mode?: string;
  ports?: unknown[];
  image?: string;
  build?: { context?: string; dockerfile?: string };
  command?: string[];
  container_name?: string;
  user?: string;
  volumes?: (string | { source?: string; target?: string })[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition?: string }>;
  healthcheck?: { test?: string[] };
}

function run(command: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd: repoRoot, encoding: 'utf8', timeout: 60_000, env: { ...process.env, COMPOSE_PROJECT_NAME: 'vcsa-backup-test' } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 127) : 0, stdout, stderr: stderr || (err?.message ?? '') });
    });
  });
}

/** `docker compose` (v2 plugin) where it exists, else `docker-compose` (Debian's package). */
async function compose(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  if ((await run('docker', ['compose', 'version'])).code === 0) return run('docker', ['compose', ...args]);
  const v1 = await run('docker-compose', args);
  if (v1.code === 127) throw new Error('neither `docker compose` nor `docker-compose` is installed: run scripts/test-setup.sh (it installs docker-compose)');
  return v1;
}

void describe('docker-compose.yml', () => {
  void test('validates (compose config -q)', async () => {
    const res = await compose(['config', '-q']);
    assert.equal(res.code, 0, res.stderr);
  });

  void test('resolves to the services the stack needs, and its fleet.yaml names its appliance containers', async () => {
    const res = await compose(['config']);
    assert.equal(res.code, 0, res.stderr);
    const services = (parse(res.stdout) as { services: Record<string, ComposeService> }).services;
    for (const name of ['redis', 's3', 'scheduler', 'worker-1', 'worker-2', 'dashboard', 'backup-now', 'vc01', 'vc02', 'vc03']) {
      assert.ok(services[name], `service ${name}`);
    }
    const redisCommand = services['redis']?.command?.join(' ') ?? '';
    assert.match(redisCommand, /--appendonly yes/);
    assert.match(redisCommand, /--maxmemory-policy noeviction/);
    assert.deepEqual(services['dashboard']?.command, ['dashboard', '--host', '0.0.0.0', '--port', '8080', '--public-name', '127.0.0.1', '--public-name', 'localhost']);
    assert.deepEqual(services['backup-now']?.command, ['run', '--wait']);
    assert.deepEqual(services['scheduler']?.command, ['schedule']);
    // docker-compose.override.yml, read by a plain `compose up`, publishes them on loopback.
    assert.match(JSON.stringify(services['dashboard']?.ports ?? []), /127\.0\.0\.1.*8080/);
    assert.match(JSON.stringify(services['s3']?.ports ?? []), /127\.0\.0\.1.*9000/);
    assert.equal(services['backup-now']?.depends_on?.['scheduler']?.condition, 'service_completed_successfully');

    const appliances = ['vc01', 'vc02', 'vc03'].map((n) => services[n]);
    for (const a of appliances) {
      assert.equal(a?.image, 'vcsa-backup-sim-appliance:latest');
      assert.equal(a?.build?.dockerfile, 'appliance/Dockerfile');
    }
    for (const w of ['worker-1', 'worker-2']) {
      assert.deepEqual(services[w]?.command, ['worker']);
      const mounts = (services[w]?.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source ?? ''}:${v.target ?? ''}`));
      assert.ok(mounts.some((m) => m.startsWith('/var/run/docker.sock:/var/run/docker.sock')), `${w} mounts the Docker socket: ${mounts.join(', ')}`);
      for (const a of ['vc01', 'vc02', 'vc03']) assert.equal(services[w]?.depends_on?.[a]?.condition, 'service_healthy', `${w} waits for ${a}`);
    }

    const env = services['worker-1']?.environment ?? {};
    const config = loadConfig(join(repoRoot, 'deploy', 'fleet.compose.yaml'), { env: { ...env } });
    assert.equal(config.redis.url, 'redis://redis:6379');
    assert.equal(config.s3.endpoint, 'http://s3:9000');
    assert.equal(config.s3.accessKeyId?.reveal(), services['s3']?.environment?.['MINIO_ROOT_USER']);
    // The dashboard listens on 0.0.0.0 in its container: it must have auth, or it refuses to start.
    assert.deepEqual(config.dashboard.token, { env: 'DASHBOARD_TOKEN' });
    assert.ok(services['dashboard']?.environment?.['DASHBOARD_TOKEN'], 'DASHBOARD_TOKEN has a value (a default, or .env)');
    const containerNames = new Set(appliances.map((a) => a?.container_name));
    assert.deepEqual(
      config.targets.map((t) => ({ name: t.name, profile: t.profile, executor: t.executor.type, container: t.executor.type === 'docker' ? t.executor.container : undefined, variables: t.variables })),
      ['vc01', 'vc02', 'vc03'].map((name) => ({ name, profile: 'vcsa-5.5', executor: 'docker', container: `vcsa-sim-${name}`, variables: {} })),
    );
    for (const t of config.targets) assert.ok(t.executor.type === 'docker' && containerNames.has(t.executor.container), `${t.name}'s container is a compose service`);
  });

  void test('with docker-compose.local.yml: every service on the host network, and fleet.compose.local.yaml on its default ports', async () => {
    const res = await compose(['-f', 'docker-compose.yml', '-f', 'docker-compose.local.yml', 'config']);
    assert.equal(res.code, 0, res.stderr);
    const services = (parse(res.stdout) as { services: Record<string, ComposeService> }).services;
    for (const [name, service] of Object.entries(services)) {
      assert.equal(service.network_mode, 'host', `${name} on the host network`);
      assert.equal(service.ports, undefined, `${name} publishes no port (the host's network has none to publish)`);
    }
    assert.deepEqual(services['s3']?.command, ['s3-server', '--host', '127.0.0.1', '--port', '19000', '--bucket', 'vcsa-backups']);
    assert.equal(services['s3']?.image, 'vcsa-backup:latest');
    assert.equal(services['redis']?.image, 'vcsa-backup-local-redis:latest');
    assert.equal(services['scratch-postgres']?.image, 'vcsa-backup-sim-appliance:latest');
    assert.equal(services['worker-1']?.environment?.['REDIS_URL'], 'redis://127.0.0.1:16379');
    const mounts = (services['worker-1']?.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source ?? ''}:${v.target ?? ''}`));
    assert.ok(mounts.some((m) => m.endsWith('deploy/fleet.compose.local.yaml:/etc/vcsa-backup/fleet.yaml:ro')), mounts.join(', '));
    for (const a of ['vc01', 'vc02', 'vc03']) assert.equal(services[a]?.environment?.['VCSA_SIM_SSH'], '0', `${a}: no sshd fighting over port 22`);

    const env = services['worker-1']?.environment ?? {};
    const config = loadConfig(join(repoRoot, 'deploy', 'fleet.compose.local.yaml'), { env: { ...env } });
    assert.equal(config.redis.url, 'redis://127.0.0.1:16379');
    assert.equal(config.s3.endpoint, 'http://127.0.0.1:19000');
    assert.equal(config.verify.scratchUrl, 'postgres://postgres@127.0.0.1:15432/postgres');
    assert.deepEqual(config.targets.map((t) => (t.executor.type === 'docker' ? t.executor.container : '')), ['vcsa-sim-vc01', 'vcsa-sim-vc02', 'vcsa-sim-vc03']);
  });
});
