/**
 * The native simulator as a container: the vcsa-backup image (the one test-setup builds; no
 * image of its own) runs `simulate-native-appliance` under `--network host` on loopback, and a
 * native backup in this process — login, validate, the appliance's job pushing its files over
 * SFTP from inside the container into this process's receiver, upload, verify — commits.
 * `docker stop` ends it cleanly.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { runNativeBackup } from '../../src/native/native-job.ts';
import { verifyBackup } from '../../src/restore/verify.ts';
import { loopbackNativeSection } from '../../src/sim/native-fleet.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { ensureAppImage } from '../support/images.ts';
import { waitFor } from '../support/poll.ts';
import { s3ConfigFor } from '../support/s3.ts';
import { dockerCli } from './appliance-container.ts';
import { capturingLogger } from '../support/capture-logger.ts';

interface Ready {
  name: string;
  url: string;
  user: string;
  version: string;
  build: string;
  tlsFingerprint: string;
  password?: string;
}

void describe('the native simulator in the vcsa-backup image', () => {
  const suffix = randomBytes(4).toString('hex');
  const container = `vcsa-native-sim-${suffix}`;
  const password = `Sim-${randomBytes(8).toString('hex')}!`;
  let dir: string;
  let s3: EmbeddedS3;
  const { logger, lines: logLines } = capturingLogger();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'native-image-test-'));
    s3 = await startEmbeddedS3({ bucket: `native-image-${suffix}` });
  });
  after(async () => {
    await dockerCli(['rm', '-f', container]).catch(() => undefined);
    await s3?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void test('docker run … simulate-native-appliance on loopback; one native backup against it commits and verifies; docker stop exits 0', async () => {
    const image = await ensureAppImage();
    const started = await dockerCli([
      'run', '-d', '--name', container, '--network', 'host', '-e', `VCSA_SIM_API_PASSWORD=${password}`,
      image, 'simulate-native-appliance', '--name', 'vcn-docker', '--listen', '127.0.0.1:0', '--version', '7.0.3.01000', '--archive-kib', '32', '--json',
    ]);
    assert.equal(started.exitCode, 0, started.stderr);
    const logs = async (): Promise<{ stdout: string; stderr: string }> => dockerCli(['logs', container]);
    const ready = await waitFor(
      'the simulated appliance to print its address',
      async () => {
        const line = (await logs()).stdout.split('\n').find((l) => l.startsWith('{'));
        return line ? (JSON.parse(line) as Ready) : undefined;
      },
      60_000,
      200,
    );
    assert.match(ready.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(ready.version, '7.0.3.01000');
    assert.equal(ready.password, undefined, 'a password given in the environment is not printed');
    assert.match(ready.tlsFingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);

    const config = parseConfig({
      s3: { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, forcePathStyle: true, checksums: 'when-required', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      spool: { dir: join(dir, 'spool'), minFreeMiB: 1 },
      native: loopbackNativeSection({ pollSeconds: 1 }),
      targets: [{ name: ready.name, profile: 'vcsa-native', api: { url: ready.url, user: ready.user, password, tls: { fingerprint: ready.tlsFingerprint } } }],
    });
    const target = config.targets[0];
    assert.ok(target);
    const store = createS3ObjectStore(s3ConfigFor(s3), logger);
    try {
      const result = await runNativeBackup({ config, target, store, logger });
      const m = result.manifest;
      assert.equal(m.native?.applianceVersion, '7.0.3.01000');
      assert.equal(m.native?.applianceBuild, ready.build);
      assert.equal(m.native?.apiDialect, 'api');
      assert.deepEqual(
        m.artifacts.map((a) => a.name).sort(),
        ['backup-metadata.json', 'config_files.tar.gz', 'database_full_backup.tar.gz', 'lotus_backup.tar.gz', 'rbd_config.tar.gz'],
      );
      const report = await verifyBackup({ config, target: ready.name, backup: m.id, store, logger });
      assert.equal(report.ok, true, report.message);
      assert.ok(report.checks.some((c) => c.name === 'archive-files' && c.status === 'pass'), JSON.stringify(report.checks));
    } finally {
      store.close();
    }
    assert.ok(!logLines.join('').includes(password), 'the API password is not in our logs');

    const stop = await dockerCli(['stop', '-t', '20', container]);
    assert.equal(stop.exitCode, 0, stop.stderr);
    assert.equal((await dockerCli(['inspect', '-f', '{{.State.ExitCode}}', container])).stdout.trim(), '0', JSON.stringify(await logs()));
  });
});
