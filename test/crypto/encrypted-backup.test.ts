import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { pino, type Logger } from 'pino';
import { runBackup, type BackupOutcome } from '../../src/backup/run-backup.ts';
import { catalogJson, listBackups } from '../../src/catalog/catalog.ts';
import { Secret } from '../../src/config/secret.ts';
import { createDecryptStream } from '../../src/crypto/decrypt-stream.ts';
import { encryptionAlgorithm } from '../../src/crypto/format.ts';
import { BackupError } from '../../src/errors.ts';
import { targetLockKey } from '../../src/locks/target-lock.ts';
import { restoreBackup } from '../../src/restore/restore.ts';
import { verifyBackup } from '../../src/restore/verify.ts';
import { readAudit } from '../../src/sim/audit.ts';
import type { SimAppliance } from '../../src/sim/appliance.ts';
import { rawS3Client } from '../support/s3.ts';
import { createFixture, type Fixture } from '../restore/fixture.ts';

/** Every value stored under a key prefix, as text. */
async function redisText(fx: Fixture): Promise<string> {
  const parts: string[] = [];
  for (const key of await fx.redis.keys(`${fx.prefix}:*`)) {
    const type = await fx.redis.type(key);
    parts.push(key);
    if (type === 'string') parts.push((await fx.redis.get(key)) ?? '');
    else if (type === 'hash') parts.push(JSON.stringify(await fx.redis.hgetall(key)));
    else if (type === 'list') parts.push(JSON.stringify(await fx.redis.lrange(key, 0, -1)));
    else if (type === 'zset') parts.push(JSON.stringify(await fx.redis.zrange(key, '0', '-1')));
    else if (type === 'set') parts.push(JSON.stringify(await fx.redis.smembers(key)));
  }
  return parts.join('\n');
}

async function decryptToText(sealed: Buffer, passphrase: Secret): Promise<string> {
  const out: Buffer[] = [];
  const dec = createDecryptStream(passphrase);
  dec.on('data', (b: Buffer) => out.push(b));
  const done = new Promise((resolve, reject) => {
    dec.on('end', resolve);
    dec.on('error', reject);
  });
  dec.end(sealed);
  await done;
  return gunzipSync(Buffer.concat(out)).toString('latin1');
}

/**
 * Client-side encryption end to end on a simulated VCSA 5.5: what lands in S3 is neither gzip
 * nor readable, verify and restore decrypt it, a wrong or missing passphrase fails before any
 * service is stopped, and the passphrase shows up in no log (debug), manifest, S3 metadata,
 * Redis key or error message.
 */
void describe('encrypted backups', () => {
  let fx: Fixture;
  let vc1: SimAppliance;
  let backup: BackupOutcome;
  const hex = randomBytes(6).toString('hex');
  const passphrase = `pass-${hex}-phrase-one`;
  const newPassphrase = `pass-${hex}-phrase-two`;
  const marker = `vm-marker-${hex}`;
  const logLines: string[] = [];
  const errors: string[] = [];
  let logger: Logger;
  let passFile: string;
  let newPassFile: string;

  const encryption = (current: string, previous: string[] = []) => ({ encryption: { passphrase: { file: current }, previousPassphrases: previous.map((file) => ({ file })) } });
  const stoppedSince = async (n: number): Promise<unknown[]> => (await readAudit(fx.auditLog)).slice(n).filter((e) => e.appliance === vc1.name && e.state === 'stopped');
  const restore = (overrides: Record<string, unknown>) => {
    const config = fx.config(overrides);
    const target = fx.target(config, 'vc1');
    return restoreBackup({ config, source: 'vc1', target, backup: backup.manifest.id, store: fx.store, executor: fx.executor(target), redis: fx.redis, logger });
  };
  const failure = async (p: Promise<unknown>, code: string): Promise<BackupError> => {
    const err = await p.then(() => null, (e: unknown) => e);
    assert.ok(err instanceof BackupError, `expected ${code}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.permanent, true);
    errors.push(err.message, JSON.stringify(err.details));
    return err;
  };

  before(async () => {
    fx = await createFixture(['vc1']);
    vc1 = fx.appliances.get('vc1')!;
    passFile = join(fx.dir, 'passphrase');
    newPassFile = join(fx.dir, 'passphrase-new');
    await writeFile(passFile, `${passphrase}\n`, { mode: 0o600 });
    await writeFile(newPassFile, `${newPassphrase}\n`, { mode: 0o600 });
    // No redaction: the test must not depend on the second line of defence.
    logger = pino({ level: 'debug' }, new Writable({ write(chunk: Buffer, _enc, cb) { logLines.push(chunk.toString('utf8')); cb(); } }));
  });
  after(async () => {
    await fx?.close();
  });

  void test('a backup with encryption stores encrypted objects and says how in the manifest', async () => {
    await vc1.sql('vcdb', `INSERT INTO vpx_entity (name, type) VALUES ('${marker}', 'vm');`);
    const config = fx.config(encryption(passFile));
    assert.equal(config.encryption?.passphrase.reveal(), passphrase, 'the config really carries the passphrase');
    backup = await runBackup({ config, target: fx.target(config, 'vc1'), executor: fx.executor(fx.target(config, 'vc1')), store: fx.store, logger });

    const salts = new Set<string>();
    for (const a of backup.manifest.artifacts) {
      assert.ok(a.file.endsWith('.gz.enc') && a.key.endsWith(`/${a.file}`), a.key);
      assert.equal(a.compression, 'gzip');
      assert.equal(a.encryption?.algorithm, encryptionAlgorithm);
      assert.deepEqual({ ...a.encryption, salt: undefined }, { algorithm: encryptionAlgorithm, kdf: 'scrypt', N: 2 ** 15, r: 8, p: 1, salt: undefined, chunkBytes: 64 * 1024 });
      assert.equal(Buffer.from(a.encryption.salt ?? '', 'base64').length, 16);
      salts.add(a.encryption.salt ?? '');

      const body = await fx.store.getBytes(a.key);
      assert.equal(body.length, a.bytes);
      assert.equal(body.subarray(0, 8).toString('latin1'), 'VCSAENC1');
      assert.notDeepEqual([...body.subarray(0, 2)], [0x1f, 0x8b], `${a.key} is gzip`);
      assert.ok(!body.includes(marker) && !body.includes('vpx_entity'), `${a.key} holds readable rows`);
      // The checks above can fail: the plaintext behind them does hold the rows.
      const text = await decryptToText(body, new Secret(passphrase, 'test'));
      assert.ok(text.length > 0);
      if (a.name === 'vcdb') assert.ok(text.includes(marker), 'the vcdb dump holds the marker row');
    }
    assert.equal(salts.size, backup.manifest.artifacts.length, 'one salt per artifact');
    assert.equal(backup.manifest.artifacts.find((a) => a.name === 'vcdb')?.key.endsWith('/postgres.sql.gz.enc'), true);
    assert.equal(typeof backup.manifest.timings['encryptMs'], 'number');

    const [entry] = await listBackups(fx.store, 'vcsa', 'vc1');
    assert.equal(catalogJson(entry!).encrypted, true, 'list shows the backup as encrypted');
  });

  void test('verify decrypts, loads and checks it', async () => {
    const report = await verifyBackup({ config: fx.config(encryption(passFile)), target: 'vc1', backup: backup.manifest.id, store: fx.store, logger, redis: fx.redis });
    assert.equal(report.ok, true, report.message);
    assert.equal(report.checksums, 'ok');
    assert.ok(report.databases.every((d) => d.loaded && d.rows > 0));

    const wrong = await verifyBackup({ config: fx.config(encryption(newPassFile)), target: 'vc1', backup: backup.manifest.id, store: fx.store, logger });
    assert.equal(wrong.ok, false);
    assert.match(wrong.message, /wrong encryption\.passphrase or the object was altered/);
    errors.push(wrong.message);
  });

  void test('a wrong passphrase fails with DECRYPT_FAILED before any service is stopped', async () => {
    const auditBefore = (await readAudit(fx.auditLog)).length;
    const err = await failure(restore(encryption(newPassFile)), 'DECRYPT_FAILED');
    assert.match(err.message, /wrong encryption\.passphrase or the object was altered/);
    assert.deepEqual(await stoppedSince(auditBefore), [], 'no service was stopped');
    assert.equal(await vc1.servicesRunning(), true);
    assert.equal(await fx.redis.exists(targetLockKey(fx.prefix, 'vc1')), 0, 'no lock taken');
  });

  void test('no passphrase configured: ENCRYPTION_PASSPHRASE_MISSING names the field, nothing stopped', async () => {
    const auditBefore = (await readAudit(fx.auditLog)).length;
    const err = await failure(restore({}), 'ENCRYPTION_PASSPHRASE_MISSING');
    assert.match(err.message, /encryption\.passphrase/);
    assert.deepEqual(await stoppedSince(auditBefore), [], 'no service was stopped');
  });

  void test('after a rotation, the old passphrase under previousPassphrases restores the backup', async () => {
    await vc1.sql('vcdb', `DELETE FROM vpx_entity WHERE name = '${marker}';`);
    const outcome = await restore(encryption(newPassFile, [passFile]));
    assert.deepEqual(outcome.restored, ['vcdb', 'inventory']);
    assert.equal((await vc1.sql('vcdb', `SELECT count(*) FROM vpx_entity WHERE name = '${marker}';`)).trim(), '1', 'the deleted row is back');
    assert.equal(await vc1.servicesRunning(), true);
  });

  void test('the passphrases appear in no log, manifest, S3 metadata, Redis value or error message', async () => {
    const logs = logLines.join('');
    assert.ok(logs.includes('"level":20'), 'nothing was logged at debug level');
    assert.ok(logs.includes('backup committed') && logs.includes('restore complete'));
    const raw = rawS3Client(fx.s3);
    const places: [string, string][] = [['logs', logs], ['errors', errors.join('\n')], ['redis', await redisText(fx)]];
    try {
      for await (const o of fx.store.list('')) {
        const head = await raw.send(new HeadObjectCommand({ Bucket: fx.s3.bucket, Key: o.key }));
        places.push([`metadata of ${o.key}`, JSON.stringify(head.Metadata ?? {})]);
        if (o.key.endsWith('manifest.json')) places.push([o.key, (await fx.store.getBytes(o.key)).toString('utf8')]);
      }
    } finally {
      raw.destroy();
    }
    assert.ok(places.some(([where]) => where.endsWith('manifest.json')), 'no manifest was checked');
    assert.ok(places.find(([where]) => where === 'redis')?.[1].includes('lastVerify'), 'Redis holds the verify result');
    for (const [where, text] of places) {
      for (const secret of [passphrase, newPassphrase, hex]) assert.ok(!text.includes(secret), `a passphrase appears in ${where}`);
    }
  });
});
