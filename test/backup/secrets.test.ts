import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { startFleetHarness, type CliResult, type FleetHarness } from '../support/fleet.ts';
import { redisText } from '../support/redis-text.ts';
import { rawS3Client } from '../support/s3.ts';

/**
 * Invariant 7 with S3 credentials from `{ env }` and `{ file }` and an age identity from
 * `{ env }`: at debug log level, through a queued backup, the in-process `backup`, `verify` and
 * a refused `restore`, the values never show up in logs, output, Redis (job data, state), S3
 * object metadata or the manifests — nor in a failure's message. The workers encrypt to the
 * recipient and never get the identity's variable: they hold nothing that decrypts.
 */
void describe('secrets stay secret', () => {
  const hex = randomBytes(6).toString('hex');
  const keyId = `AKIATEST${hex.toUpperCase()}`;
  const secret = `s3cr3t-${hex}-value`;
  const envName = `TEST_S3_KEY_ID_${hex.toUpperCase()}`;
  const identityEnv = `TEST_AGE_IDENTITY_${hex.toUpperCase()}`;
  let identity: string;
  let wrongIdentity: string;
  let h: FleetHarness;
  let s3: S3Client;
  const outputs: CliResult[] = [];

  const assertNoSecret = (text: string, where: string): void => {
    assert.ok(!text.includes(keyId), `the access key id appears in ${where}`);
    assert.ok(!text.includes(secret), `the secret access key appears in ${where}`);
    assert.ok(!text.includes(identity) && !text.includes(wrongIdentity) && !text.includes('AGE-SECRET-KEY'), `an age identity appears in ${where}`);
  };

  before(async () => {
    [identity, wrongIdentity] = await Promise.all([generateIdentity(), generateIdentity()]);
    const recipient = await identityToRecipient(identity);
    h = await startFleetHarness({
      count: 1,
      workers: 1,
      env: { [envName]: keyId, LOG_LEVEL: 'debug' },
      edit: (raw, dir) => {
        const file = join(dir, 'secrets', 's3-secret-test');
        writeFileSync(file, `${secret}\n`, { mode: 0o600 });
        raw['s3'] = { ...(raw['s3'] as Record<string, unknown>), accessKeyId: { env: envName }, secretAccessKey: { file } };
        raw['encryption'] = { recipients: [recipient], identities: [{ env: identityEnv }] };
      },
    });
    s3 = rawS3Client(h.fleet.sim.s3);
  });
  after(async () => {
    s3?.destroy();
    await h?.close();
  });

  void test('a queued backup and an in-process backup succeed with the referenced credentials', async () => {
    const queued = await h.cli(['run', '--target', 'vc01', '--wait', '--json']);
    assert.equal(queued.code, 0, queued.stderr);
    const direct = await h.cli(['backup', '--target', 'vc01', '--json']);
    assert.equal(direct.code, 0, direct.stderr);
    outputs.push(queued, direct);
    // The config really references the secrets (the test would prove nothing otherwise).
    const config = h.config();
    assert.equal(config.s3.accessKeyId?.reveal(), keyId);
    assert.equal(config.s3.secretAccessKey?.reveal(), secret);
  });

  void test('verify decrypts with the identity given to it alone; a restore with a wrong one fails before anything is stopped', async () => {
    const verify = await h.cli(['verify', '--target', 'vc01', '--json', '--log-level', 'debug'], { [identityEnv]: identity });
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.equal((JSON.parse(verify.stdout) as { ok: boolean }).ok, true);
    const auditBefore = (await h.audit()).length;
    const restore = await h.cli(['restore', '--target', 'vc01', '--yes', '--json', '--log-level', 'debug'], { [identityEnv]: wrongIdentity });
    assert.equal(restore.code, 1, restore.stdout + restore.stderr);
    assert.match(restore.stdout, /DECRYPT_FAILED/);
    assert.deepEqual((await h.audit()).slice(auditBefore).filter((e) => e.state === 'stopped'), [], 'a service was stopped');
    outputs.push(verify, restore);
  });

  void test('a failing backup does not reveal them either', async () => {
    await h.editConfig((raw) => {
      raw['s3'] = { ...(raw['s3'] as Record<string, unknown>), bucket: `missing-${hex}`, createBucket: false };
    });
    const res = await h.cli(['backup', '--target', 'vc01', '--json']);
    assert.equal(res.code, 1, res.stderr);
    outputs.push(res);
  });

  void test('not in logs, CLI output, Redis, S3 metadata or manifests', async () => {
    assert.equal(outputs.length, 5);
    outputs.forEach((o, i) => {
      assertNoSecret(o.stdout, `stdout of CLI run ${i}`);
      assertNoSecret(o.stderr, `logs of CLI run ${i}`);
    });
    for (const w of h.workers) {
      assert.ok(w.log().includes('"level":20'), 'the worker did not log at debug level');
      assertNoSecret(w.log(), `the logs of worker ${w.n}`);
    }
    const redisDump = await redisText(h.redis, h.prefix);
    assert.ok(redisDump.includes('runId') && redisDump.includes('spool'), 'the job data was not found in Redis');
    assertNoSecret(redisDump, 'Redis');

    const keys: string[] = [];
    const store = createS3ObjectStore({ ...h.config().s3, bucket: h.fleet.sim.s3.bucket });
    try {
      for await (const o of store.list('')) keys.push(o.key);
      assert.ok(keys.filter((k) => k.endsWith('manifest.json')).length >= 2);
      for (const key of keys) {
        const head = await s3.send(new HeadObjectCommand({ Bucket: h.fleet.sim.s3.bucket, Key: key }));
        assertNoSecret(JSON.stringify(head.Metadata ?? {}), `the metadata of ${key}`);
        if (key.endsWith('manifest.json')) assertNoSecret((await store.getBytes(key)).toString('utf8'), key);
        else assert.ok(key.endsWith('.gz.age'), `${key} is not encrypted`);
      }
    } finally {
      store.close();
    }
  });
});
