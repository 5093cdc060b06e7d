import assert from 'node:assert/strict';
import { execFile as execFileCb, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { pino, type Logger } from 'pino';
import type { ManifestArtifact } from '../../src/backup/manifest.ts';
import { runBackup, type BackupOutcome } from '../../src/backup/run-backup.ts';
import { catalogJson, listBackups } from '../../src/catalog/catalog.ts';
import { Secret } from '../../src/config/secret.ts';
import { BackupError } from '../../src/errors.ts';
import { targetLockKey } from '../../src/locks/target-lock.ts';
import { restoreBackup, type RestoreProgress } from '../../src/restore/restore.ts';
import { verifyBackup } from '../../src/restore/verify.ts';
import { readAudit } from '../../src/sim/audit.ts';
import type { SimAppliance } from '../../src/sim/appliance.ts';
import { redisText } from '../support/redis-text.ts';
import { rawS3Client } from '../support/s3.ts';
import { createFixture, type Fixture } from '../restore/fixture.ts';
import { convertToLegacyFormat } from './legacy-format.ts';

const execFile = promisify(execFileCb);
const pgBin = '/usr/lib/postgresql/15/bin';

/**
 * age encryption end to end on a simulated VCSA 5.5: what lands in S3 opens with Debian's `age`
 * and `gunzip` alone (`age -d -i key.txt postgres.sql.gz.age | gunzip | psql` loads the VCDB;
 * a passphrase-encrypted object opens with `age -d` at its passphrase prompt); a worker's
 * recipients-only config holds nothing that decrypts; a missing or wrong key fails before any
 * download and before anything is stopped; backups of the old format stay restorable; and no
 * key or passphrase shows up in logs (debug), manifests, S3 metadata, Redis or errors.
 */
void describe('age-encrypted backups', () => {
  let fx: Fixture;
  let vc1: SimAppliance;
  let backup: BackupOutcome;
  let identity: string;
  let other: string;
  let recipient: string;
  let keyFile: string;
  let otherKeyFile: string;
  let passFile: string;
  const hex = randomBytes(6).toString('hex');
  const passphrase = `pass-${hex}-phrase`;
  const marker = `vm-marker-${hex}`;
  const logLines: string[] = [];
  const errors: string[] = [];
  let logger: Logger;

  const withKey = (file: string): Record<string, unknown> => ({ encryption: { recipients: [recipient], identities: [{ file }] } });
  const stoppedSince = async (n: number): Promise<unknown[]> => (await readAudit(fx.auditLog)).slice(n).filter((e) => e.appliance === vc1.name && e.state === 'stopped');
  const restore = (overrides: Record<string, unknown>, id = backup.manifest.id, onProgress?: (e: RestoreProgress) => void) => {
    const config = fx.config(overrides);
    const target = fx.target(config, 'vc1');
    return restoreBackup({ config, source: 'vc1', target, backup: id, store: fx.store, executor: fx.executor(target), redis: fx.redis, logger, ...(onProgress ? { onProgress } : {}) });
  };
  const failure = async (p: Promise<unknown>, code: string): Promise<BackupError> => {
    const err = await p.then(() => null, (e: unknown) => e);
    assert.ok(err instanceof BackupError, `expected ${code}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    errors.push(err.message, JSON.stringify(err.details));
    return err;
  };
  const download = async (a: ManifestArtifact): Promise<string> => {
    const path = join(fx.dir, `${randomBytes(3).toString('hex')}-${a.file}`);
    await pipeline(await fx.store.get(a.key), createWriteStream(path));
    return path;
  };
  const artifact = (outcome: BackupOutcome, name: string): ManifestArtifact => outcome.manifest.artifacts.find((a) => a.name === name)!;

  before(async () => {
    const age = spawnSync('age', ['--version'], { encoding: 'utf8' });
    assert.equal(age.status, 0, "Debian's age is not installed: scripts/test-setup.sh installs it (apt-get install age)");
    fx = await createFixture(['vc1']);
    vc1 = fx.appliances.get('vc1')!;
    [identity, other] = await Promise.all([generateIdentity(), generateIdentity()]);
    recipient = await identityToRecipient(identity);
    keyFile = join(fx.dir, 'key.txt');
    otherKeyFile = join(fx.dir, 'other-key.txt');
    passFile = join(fx.dir, 'passphrase');
    // As age-keygen writes them.
    await writeFile(keyFile, `# created: 2026-11-26T02:00:00+01:00\n# public key: ${recipient}\n${identity}\n`, { mode: 0o600 });
    await writeFile(otherKeyFile, `# created: 2026-11-26T02:00:00+01:00\n# public key: ${await identityToRecipient(other)}\n${other}\n`, { mode: 0o600 });
    await writeFile(passFile, `${passphrase}\n`, { mode: 0o600 });
    // No redaction: the test must not depend on the second line of defence.
    logger = pino({ level: 'debug' }, new Writable({ write(chunk: Buffer, _enc, cb) { logLines.push(chunk.toString('utf8')); cb(); } }));
  });
  after(async () => {
    await fx?.close();
  });

  void test("a recipients-only backup: age objects that Debian's `age -d -i key.txt … | gunzip | psql` loads", async () => {
    await vc1.sql('vcdb', `INSERT INTO vpx_entity (name, type) VALUES ('${marker}', 'vm');`);
    // What a worker holds: the public key, nothing that decrypts.
    const config = fx.config({ encryption: { recipients: [recipient] } });
    backup = await runBackup({ config, target: fx.target(config, 'vc1'), executor: fx.executor(fx.target(config, 'vc1')), store: fx.store, logger });

    for (const a of backup.manifest.artifacts) {
      assert.ok(a.file.endsWith('.gz.age') && a.key.endsWith(`/${a.file}`), a.key);
      assert.deepEqual(a.encryption, { algorithm: 'age', recipients: [recipient], passphrase: null });
      const body = await fx.store.getBytes(a.key);
      assert.equal(body.subarray(0, 22).toString('latin1'), 'age-encryption.org/v1\n');
      assert.ok(!body.includes(marker) && !body.includes('vpx_entity'), `${a.key} holds readable rows`);
    }
    assert.equal(artifact(backup, 'vcdb').key.endsWith('/postgres.sql.gz.age'), true);
    const [entry] = await listBackups(fx.store, 'vcsa', 'vc1');
    assert.equal(catalogJson(entry!).encrypted, true);

    const db = `age_cli_${hex}`;
    await execFile(`${pgBin}/psql`, ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'postgres', '-qc', `CREATE DATABASE ${db};`]);
    try {
      const object = await download(artifact(backup, 'vcdb'));
      const shell = `set -o pipefail; age -d -i ${keyFile} ${object} | gunzip | ${pgBin}/psql -q -h 127.0.0.1 -U postgres -d ${db} >/dev/null 2>&1`;
      const loaded = spawnSync('bash', ['-c', shell], { encoding: 'utf8' });
      assert.equal(loaded.status, 0, loaded.stderr);
      const { stdout } = await execFile(`${pgBin}/psql`, ['-h', '127.0.0.1', '-U', 'postgres', '-d', db, '-Atc', `SELECT count(*) FROM vpx_entity WHERE name = '${marker}';`]);
      assert.equal(stdout.trim(), '1', 'the VCDB loaded by hand holds the marker row');
      // The same pipeline with another key fails: the check above is a real one.
      const refused = spawnSync('bash', ['-c', `set -o pipefail; age -d -i ${otherKeyFile} ${object} | gunzip > /dev/null`], { encoding: 'utf8' });
      assert.notEqual(refused.status, 0);
      // The Inventory Service's archive, too: gunzip gives back exactly the dump.
      const inv = artifact(backup, 'inventory');
      const plain = spawnSync('bash', ['-c', `set -o pipefail; age -d -i ${keyFile} ${await download(inv)} | gunzip`], { maxBuffer: 256 * 1024 * 1024 });
      assert.equal(plain.status, 0, String(plain.stderr));
      assert.equal(createHash('sha256').update(plain.stdout).digest('hex'), inv.rawSha256);
    } finally {
      await execFile(`${pgBin}/psql`, ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'postgres', '-qc', `DROP DATABASE IF EXISTS ${db} WITH (FORCE);`]);
    }
  });

  void test("with the worker's config (recipients only) restore refuses with ENCRYPTION_IDENTITY_MISSING: nothing downloaded or stopped", async () => {
    const auditBefore = (await readAudit(fx.auditLog)).length;
    const events: RestoreProgress[] = [];
    const err = await failure(restore({ encryption: { recipients: [recipient] } }, backup.manifest.id, (e) => events.push(e)), 'ENCRYPTION_IDENTITY_MISSING');
    assert.match(err.message, new RegExp(`encrypted to ${recipient}.*encryption\\.identities`));
    assert.deepEqual(events.filter((e) => (e.bytes ?? 0) > 0), [], 'bytes were downloaded');
    assert.deepEqual(await stoppedSince(auditBefore), []);
  });

  void test('a wrong identity fails with DECRYPT_FAILED from the headers alone: no download, no lock, nothing stopped', async () => {
    const auditBefore = (await readAudit(fx.auditLog)).length;
    const events: RestoreProgress[] = [];
    const err = await failure(restore(withKey(otherKeyFile), backup.manifest.id, (e) => events.push(e)), 'DECRYPT_FAILED');
    assert.match(err.message, new RegExp(`none of the configured keys opens it.*hold the keys of ${await identityToRecipient(other)}.*encrypted to ${recipient}`));
    assert.equal(err.permanent, true);
    assert.deepEqual(events.filter((e) => (e.bytes ?? 0) > 0), [], 'bytes were downloaded');
    assert.deepEqual(await stoppedSince(auditBefore), [], 'no service was stopped');
    assert.equal(await vc1.servicesRunning(), true);
    assert.equal(await fx.redis.exists(targetLockKey(fx.prefix, 'vc1')), 0, 'no lock taken');
  });

  void test('verify and restore decrypt with the identity from the key file', async () => {
    const report = await verifyBackup({ config: fx.config(withKey(keyFile)), target: 'vc1', backup: backup.manifest.id, store: fx.store, logger, redis: fx.redis });
    assert.equal(report.ok, true, report.message);
    assert.ok(report.databases.every((d) => d.loaded && d.rows > 0));
    await vc1.sql('vcdb', `DELETE FROM vpx_entity WHERE name = '${marker}';`);
    const outcome = await restore(withKey(keyFile));
    assert.deepEqual(outcome.restored, ['vcdb', 'inventory']);
    assert.equal((await vc1.sql('vcdb', `SELECT count(*) FROM vpx_entity WHERE name = '${marker}';`)).trim(), '1', 'the deleted row is back');
  });

  void test("a passphrase-only config encrypts with age's scrypt: `age -d` opens it with the passphrase typed at its prompt", async () => {
    const config = fx.config({ encryption: { passphrase: { file: passFile } } });
    const outcome = await runBackup({ config, target: fx.target(config, 'vc1'), executor: fx.executor(fx.target(config, 'vc1')), store: fx.store, logger });
    const vcdb = artifact(outcome, 'vcdb');
    assert.deepEqual(vcdb.encryption, { algorithm: 'age', recipients: [], passphrase: { kdf: 'scrypt', workFactor: 18 } });
    const object = await download(vcdb);
    // age reads a passphrase from a terminal only: `script` gives it one, fed from our stdin.
    const typed = (answer: string) => spawnSync('script', ['-qec', `age -d -o ${object}.out.gz ${object}`, '/dev/null'], { input: `${answer}\n`, encoding: 'utf8', timeout: 60_000 });
    const wrong = typed(`not-${passphrase}`);
    assert.notEqual(wrong.status, 0, 'age accepted a wrong passphrase: the check below would prove nothing');
    assert.match(wrong.stdout, /incorrect passphrase/);
    const opened = typed(passphrase);
    assert.equal(opened.status, 0, opened.stdout);
    const dump = gunzipSync(await readFile(`${object}.out.gz`));
    assert.equal(createHash('sha256').update(dump).digest('hex'), vcdb.rawSha256);
  });

  void test('a backup of the old format (aes-256-gcm-stream-v1) still verifies with the passphrase, and says what is missing without it', async () => {
    const plain = await fx.backup('vc1');
    const legacy = await convertToLegacyFormat(fx.store, plain.manifestKey, new Secret(passphrase, 'test'));
    assert.ok(legacy.artifacts.every((a) => a.key.endsWith('.gz.enc') && a.encryption?.algorithm === 'aes-256-gcm-stream-v1'));
    const config = fx.config({ encryption: { recipients: [recipient], identities: [{ file: keyFile }], previousPassphrases: [{ file: passFile }] } });
    const report = await verifyBackup({ config, target: 'vc1', backup: legacy.id, store: fx.store, logger });
    assert.equal(report.ok, true, report.message);
    const err = await failure(restore(withKey(keyFile), legacy.id), 'ENCRYPTION_PASSPHRASE_MISSING');
    assert.match(err.message, /encryption\.passphrase/);
  });

  void test('no identity or passphrase appears in logs, manifests, S3 metadata, Redis values or error messages', async () => {
    const logs = logLines.join('');
    assert.ok(logs.includes('"level":20'), 'nothing was logged at debug level');
    assert.ok(logs.includes('backup committed') && logs.includes('restore complete'));
    const raw = rawS3Client(fx.s3);
    const places: [string, string][] = [['logs', logs], ['errors', errors.join('\n')], ['redis', await redisText(fx.redis, fx.prefix)]];
    try {
      for await (const o of fx.store.list('')) {
        const head = await raw.send(new HeadObjectCommand({ Bucket: fx.s3.bucket, Key: o.key }));
        places.push([`metadata of ${o.key}`, JSON.stringify(head.Metadata ?? {})]);
        if (o.key.endsWith('manifest.json')) places.push([o.key, (await fx.store.getBytes(o.key)).toString('utf8')]);
      }
    } finally {
      raw.destroy();
    }
    assert.ok(places.filter(([where]) => where.endsWith('manifest.json')).length >= 3, 'the manifests were not checked');
    assert.ok(errors.length >= 6, 'the failures were not collected');
    for (const [where, text] of places) {
      for (const secret of [identity, other, passphrase, hex, 'AGE-SECRET-KEY']) assert.ok(!text.includes(secret), `a secret appears in ${where}`);
    }
  });
});
