/**
 * The per-job receiver refuses what it must (wrong credentials, `..`, paths outside its folder,
 * symlinks, reads, shells, connections after it closed), and restore-stage serves exactly the
 * chosen backup's files, read-only, with the checksums of the manifest.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import ssh2, { type SFTPWrapper } from 'ssh2';
import { parseConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/log.ts';
import { runNativeBackup } from '../../src/native/native-job.ts';
import { stageRestore } from '../../src/native/restore-stage.ts';
import { startSftpServer, type RunningSftpServer } from '../../src/native/sftp-server.ts';
import type { NativeAppliance } from '../../src/sim/native-appliance.ts';
import { loopbackNativeSection, nativeTargets, startNativeAppliances } from '../../src/sim/native-fleet.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../src/storage/embedded-s3.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { s3ConfigFor } from '../support/s3.ts';

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'native-sftp-test-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function connect(port: number, user: string, password: string): Promise<{ client: ssh2.Client; sftp: SFTPWrapper }> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    client.on('error', reject);
    client.on('ready', () => client.sftp((err, sftp) => (err ? reject(err) : resolve({ client, sftp }))));
    client.connect({ host: '127.0.0.1', port, username: user, password, hostVerifier: () => true, readyTimeout: 10_000 });
  });
}

function op(fn: (cb: (err: Error | null | undefined, value?: unknown) => void) => void): Promise<unknown> {
  return new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value))));
}

function put(sftp: SFTPWrapper, path: string, data: Buffer): Promise<unknown> {
  return op((cb) => sftp.writeFile(path, data, (err) => cb(err)));
}

void describe('per-job SFTP receiver', () => {
  let server: RunningSftpServer;
  const received = (): string => join(dir, 'received');
  before(async () => {
    server = await startSftpServer({ mode: 'write-only', dir: received(), folder: 'vc01-job', listenHost: '127.0.0.1', listenPort: 0, logger: silentLogger });
  });
  after(async () => {
    await server.close();
  });

  void test('accepts writes into its folder from the right user only, and refuses escapes, symlinks, reads and shells', async () => {
    await assert.rejects(connect(server.port, server.credentials.user, 'wrong-password'), /authentication/i);
    await assert.rejects(connect(server.port, 'root', server.credentials.password), /authentication/i);
    const { client, sftp } = await connect(server.port, server.credentials.user, server.credentials.password);
    try {
      await put(sftp, '/vc01-job/config_files.tar.gz', Buffer.from('archive'));
      await put(sftp, 'relative.json', Buffer.from('{}'));
      await assert.rejects(put(sftp, '/vc01-job/../escape', Buffer.from('x')), /refused|denied/i);
      await assert.rejects(put(sftp, '../escape', Buffer.from('x')), /refused|denied/i);
      await assert.rejects(put(sftp, '/etc/cron.d/evil', Buffer.from('x')), /refused|denied|only/i);
      await assert.rejects(put(sftp, '/tmp/evil', Buffer.from('x')), /refused|denied|only/i);
      await assert.rejects(op((cb) => sftp.symlink('/etc/passwd', '/vc01-job/link', (err) => cb(err))), /symlink/i);
      await assert.rejects(op((cb) => sftp.readFile('/vc01-job/config_files.tar.gz', (err, data) => cb(err, data))), /reading is refused|denied/i);
      await assert.rejects(op((cb) => sftp.unlink('/vc01-job/config_files.tar.gz', (err) => cb(err))), /refused|denied/i);
      await assert.rejects(op((cb) => sftp.rename('/vc01-job/config_files.tar.gz', '/vc01-job/x', (err) => cb(err))), /refused|denied/i);
      await assert.rejects(op((cb) => client.exec('id', (err) => cb(err))), /unable to exec|denied|fail/i);
    } finally {
      client.end();
    }
    assert.deepEqual((await readdir(received())).sort(), ['config_files.tar.gz', 'relative.json']);
    assert.ok(server.refusals.some((r) => r.op === 'symlink'));
    assert.ok(server.refusals.filter((r) => r.op === 'login').length >= 2);
    assert.ok(!JSON.stringify(server.refusals).includes(server.credentials.password));
    // Closed when the job ends: new connections are refused, even with the right credentials.
    await server.close();
    await assert.rejects(connect(server.port, server.credentials.user, server.credentials.password), /ECONNREFUSED|closed|ended|handshake/i);
  });
});

void describe('restore-stage', () => {
  let s3: EmbeddedS3;
  let appliances: NativeAppliance[];
  before(async () => {
    s3 = await startEmbeddedS3();
    appliances = await startNativeAppliances(1, { archiveBytes: 24 * 1024 });
  });
  after(async () => {
    await Promise.allSettled(appliances.map((a) => a.stop()));
    await s3.stop();
  });

  void test('serves exactly the chosen backup, read-only, with the manifest checksums and per-session credentials', async () => {
    const [vc] = appliances;
    assert.ok(vc);
    const config = parseConfig({
      s3: { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, forcePathStyle: true, checksums: 'when-required', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      spool: { dir: join(dir, 'spool'), minFreeMiB: 1 },
      native: loopbackNativeSection({ pollSeconds: 1 }),
      targets: await nativeTargets(appliances, join(dir, 'secrets')),
    });
    const target = config.targets[0];
    assert.ok(target);
    const store = createS3ObjectStore(s3ConfigFor(s3), silentLogger);
    try {
      const older = await runNativeBackup({ config, target, store, logger: silentLogger });
      const olderFiles = vc.jobs.at(-1)?.files ?? [];
      await runNativeBackup({ config, target, store, logger: silentLogger });
      const staged = await stageRestore({ config, target: vc.name, backup: older.manifest.id, store, logger: silentLogger, listenHost: '127.0.0.1', listenPort: 0, advertiseHost: '127.0.0.1' });
      try {
        assert.match(staged.location, new RegExp(`^sftp://127\\.0\\.0\\.1:\\d+/${vc.name}-${older.manifest.id.replace('.', '\\.')}$`));
        const port = Number(new URL(staged.location).port);
        const folder = new URL(staged.location).pathname;
        const { client, sftp } = await connect(port, staged.credentials.user, staged.credentials.password);
        try {
          const names = ((await op((cb) => sftp.readdir(folder, (err, list) => cb(err, list)))) as { filename: string }[]).map((e) => e.filename).sort();
          assert.deepEqual(names, olderFiles.map((f) => f.name).sort());
          for (const f of olderFiles) {
            const data = (await op((cb) => sftp.readFile(`${folder}/${f.name}`, (err, d) => cb(err, d)))) as Buffer;
            assert.equal(data.length, f.bytes);
            assert.equal(createHash('sha256').update(data).digest('hex'), f.sha256, `${f.name} as the appliance wrote it`);
          }
          await assert.rejects(put(sftp, `${folder}/new`, Buffer.from('x')), /read-only|denied/i);
          await assert.rejects(op((cb) => sftp.readFile('/etc/passwd', (err, d) => cb(err, d))), /denied|only/i);
        } finally {
          client.end();
        }
        await assert.rejects(connect(port, staged.credentials.user, 'guess'), /authentication/i);
      } finally {
        await staged.close();
      }
    } finally {
      store.close();
    }
  });
});
