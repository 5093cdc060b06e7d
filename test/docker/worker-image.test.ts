/**
 * The repository's Dockerfile builds (on a local stand-in for node:24-bookworm-slim when the
 * public image is missing), and a worker running in that image backs up a containerised
 * simulated appliance through the docker executor (the engine's socket mounted in): `run
 * --wait --json`, itself run from the image, exits 0 with the backup in S3.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import { rawS3Client } from '../support/s3.ts';
import { ensureAppImage } from '../support/images.ts';
import { dockerCli, startApplianceContainer, type ApplianceContainer } from './appliance-container.ts';

const suffix = randomBytes(4).toString('hex');
const prefix = `test-docker-worker-${suffix}`;
const dockerSocket = '/var/run/docker.sock';

void describe('the vcsa-backup image', () => {
  let dir: string;
  let s3: EmbeddedS3;
  let redis: Redis;
  let image: string;
  let appliance: ApplianceContainer | undefined;
  const workerName = `vcsa-backup-worker-${suffix}`;
  let configPath: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'docker-worker-test-'));
    s3 = await startEmbeddedS3({ bucket: `docker-worker-${suffix}` });
    redis = new Redis('redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 });
  });

  after(async () => {
    await dockerCli(['rm', '-f', workerName]).catch(() => undefined);
    await appliance?.remove();
    if (redis) {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
    await s3?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void test('builds from the Dockerfile, runs as a non-root user, and has the PostgreSQL client tools', async () => {
    image = await ensureAppImage();
    const inspect = JSON.parse((await dockerCli(['image', 'inspect', image])).stdout) as { Config: { User: string; Entrypoint: string[]; Cmd: string[]; Healthcheck?: { Test: string[] } } }[];
    const config = inspect[0]?.Config;
    assert.ok(config);
    assert.equal(config.User, 'node');
    assert.deepEqual(config.Cmd, ['worker']);
    assert.equal(config.Entrypoint.at(-1), 'vcsa-backup');
    assert.match(config.Healthcheck?.Test.join(' ') ?? '', /vcsa-backup status/);
    const tools = await dockerCli(['run', '--rm', '--network', 'none', '--entrypoint', 'sh', image, '-c', 'id -u && /usr/lib/postgresql/15/bin/pg_restore --version && node --version && vcsa-backup --help']);
    assert.equal(tools.exitCode, 0, tools.stderr);
    assert.match(tools.stdout, /^1000\n/);
    assert.match(tools.stdout, /pg_restore \(PostgreSQL\) 15\./);
    assert.match(tools.stdout, /^v24\./m, 'the image runs Node.js 24 (node:24-bookworm-slim)');
    assert.match(tools.stderr, /usage: vcsa-backup <command>/);
  });

  void test('a worker in the image backs up a containerised appliance over the docker executor; run --wait --json exits 0', async () => {
    assert.ok(image, 'the image was built by the previous test');
    appliance = await startApplianceContainer({ dir, namePrefix: 'vcsa-sim-worker' });
    configPath = join(dir, 'fleet.yaml');
    await writeFile(
      configPath,
      stringify({
        redis: { url: 'redis://127.0.0.1:6379', prefix },
        s3: { bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, checksums: 'when-required', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
        spool: { minFreeMiB: 0 },
        retention: { afterBackup: false },
        worker: { attempts: 1 },
        targets: [{ name: appliance.name, profile: 'vcsa-5.5', executor: { type: 'docker', container: appliance.name } }],
      }),
      { mode: 0o644 },
    );
    const mounts = ['-v', `${configPath}:/etc/vcsa-backup/fleet.yaml:ro`];
    // The image's user reaches the engine through the socket's group, as compose's group_add does.
    const socketGroup = String(statSync(dockerSocket).gid);
    const started = await dockerCli(['run', '-d', '--name', workerName, '--network', 'host', '--group-add', socketGroup, '-v', `${dockerSocket}:${dockerSocket}`, ...mounts, image]);
    assert.equal(started.exitCode, 0, started.stderr);
    const workerLogs = async (): Promise<string> => {
      const res = await dockerCli(['logs', '--tail', '30', workerName]);
      return `${res.stdout}${res.stderr}`;
    };

    const run = await dockerCli(['run', '--rm', '--network', 'host', ...mounts, image, 'run', '--wait', '--json'], { timeoutMs: 180_000 });
    assert.equal(run.exitCode, 0, `run --wait --json: ${run.stdout}\n${run.stderr}\nworker:\n${await workerLogs()}`);
    const result = JSON.parse(run.stdout) as { backups: { target: string; manifestKey: string; artifacts: { name: string; bytes: number }[] }[]; failures: unknown[] };
    assert.deepEqual(result.failures, []);
    assert.equal(result.backups.length, 1);
    const backup = result.backups[0];
    assert.ok(backup);
    assert.equal(backup.target, appliance.name);
    assert.deepEqual(backup.artifacts.map((a) => a.name), ['vcdb', 'inventory']);

    // The manifest is in the host's S3, written by the worker in the container.
    const manifest = await rawS3Client(s3).send(new GetObjectCommand({ Bucket: s3.bucket, Key: backup.manifestKey }));
    const body = JSON.parse(await manifest.Body?.transformToString() ?? '{}') as { target?: string; executor?: string };
    assert.equal(body.target, appliance.name);
    assert.match(await workerLogs(), new RegExp(appliance.name), 'the worker container ran the job');
    assert.equal((await dockerCli(['inspect', '-f', '{{.State.Running}}', workerName])).stdout.trim(), 'true', 'the worker keeps running');
    // The image's HEALTHCHECK, run as Docker runs it, passes in the worker's container.
    const health = JSON.parse((await dockerCli(['image', 'inspect', '-f', '{{json .Config.Healthcheck.Test}}', image])).stdout) as string[];
    assert.equal(health[0], 'CMD-SHELL');
    const healthRun = await dockerCli(['exec', workerName, 'sh', '-c', health[1] ?? 'false']);
    assert.equal(healthRun.exitCode, 0, `healthcheck: ${healthRun.stderr}`);

    assert.equal(await appliance.servicesRunning(), true);
    const audit = (await appliance.audit()).slice(2).map((e) => `${e.service}:${e.state}`);
    assert.deepEqual(audit, ['vmware-vpxd:stopped', 'vmware-inventoryservice:stopped', 'vmware-inventoryservice:running', 'vmware-vpxd:running']);

    // SIGTERM (docker stop) ends the worker cleanly.
    const stop = await dockerCli(['stop', '-t', '20', workerName]);
    assert.equal(stop.exitCode, 0, stop.stderr);
    assert.equal((await dockerCli(['inspect', '-f', '{{.State.ExitCode}}', workerName])).stdout.trim(), '0', await workerLogs());
  });
});
