import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort, runCli } from '../support/fleet.ts';

void test('queue commands with Redis unreachable: they wait redis.unreachableSeconds, then one clear REDIS_UNREACHABLE, exit 1, no password shown', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vcsa-redis-down-'));
  try {
    const config = join(dir, 'fleet.yaml');
    await writeFile(config, 'redis: { unreachableSeconds: 2 }\ns3: { bucket: some-bucket }\ntargets:\n  - { name: db1, profile: postgres, executor: { type: local } }\n');
    const url = `redis://:s3cret-pw@127.0.0.1:${await freePort()}`;
    for (const command of ['run', 'status', 'schedule']) {
      const res = await runCli([command, '--config', config, '--json'], { REDIS_URL: url });
      assert.equal(res.code, 1, `${command}: ${res.stderr}`);
      const doc = JSON.parse(res.stdout) as { error: { code: string; message: string } };
      assert.equal(doc.error.code, 'REDIS_UNREACHABLE');
      assert.match(doc.error.message, /127\.0\.0\.1/);
      assert.match(doc.error.message, /REDIS_URL/);
      assert.match(doc.error.message, /for redis\.unreachableSeconds \(2 s\)/, 'it waited for Redis before giving up');
      assert.match(res.stderr, /waiting for it up to redis\.unreachableSeconds \(2 s\)/, 'it said it was waiting');
      assert.ok(!`${res.stdout}${res.stderr}`.includes('s3cret-pw'), `${command} printed the Redis password`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
