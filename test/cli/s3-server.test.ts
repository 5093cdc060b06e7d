/**
 * `vcsa-backup s3-server`: the embedded S3 endpoint as a process of its own (the S3 of
 * docker-compose.local.yml). It prints where it listens with --json, serves the bucket it made,
 * and exits 0 on SIGTERM; bad options are refused with exit 2.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

const bin = fileURLToPath(new URL('../../bin/vcsa-backup.js', import.meta.url));

function start(args: readonly string[]): ReturnType<typeof spawn> {
  return spawn(process.execPath, [bin, 's3-server', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'warn' } });
}

void describe('s3-server', () => {
  void test('serves its bucket on the port it prints, and stops on SIGTERM with exit 0', async () => {
    const child = start(['--port', '0', '--bucket', 'compose-test', '--json']);
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    try {
      const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
      const info = JSON.parse(line) as { endpoint: string; bucket: string; region: string };
      assert.match(info.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(info.bucket, 'compose-test');
      const s3 = new S3Client({ endpoint: info.endpoint, region: info.region, forcePathStyle: true, credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
      await s3.send(new PutObjectCommand({ Bucket: info.bucket, Key: 'a/b.txt', Body: 'hello' }));
      const got = await s3.send(new GetObjectCommand({ Bucket: info.bucket, Key: 'a/b.txt' }));
      assert.equal(await got.Body?.transformToString(), 'hello');
      s3.destroy();
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      assert.equal(code, 0, stderr);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  void test('a bad bucket name or port is bad input (exit 2)', async () => {
    await Promise.all(
      [['--bucket', 'Not_A_Bucket'], ['--port', '70000'], ['--port', 'x']].map(async (args) => {
        const child = start(args);
        let stderr = '';
        child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
        const [code] = (await once(child, 'exit')) as [number | null];
        assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
        assert.match(stderr, new RegExp(`--${args[0]?.slice(2) ?? ''}`));
      }),
    );
  });
});
