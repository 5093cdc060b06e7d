import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Decrypter, generateIdentity, identityToRecipient } from 'age-encryption';
import { encryptOnce } from '../../src/backup/encrypt.ts';
import { decryptionPassphrases, parseConfig } from '../../src/config/load.ts';
import { Secret } from '../../src/config/secret.ts';
import { decryptionKeys } from '../../src/crypto/key-ring.ts';
import { ConfigError } from '../../src/errors.ts';

const base = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  s3: { bucket: 'vcsa-backups', endpoint: 'http://127.0.0.1:9', forcePathStyle: true },
  targets: [{ name: 'vc01', profile: 'postgres', executor: { type: 'local' } }],
  ...extra,
});

function issuesOf(raw: unknown, env: NodeJS.ProcessEnv = {}): readonly string[] {
  try {
    parseConfig(raw, { env });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.issues;
  }
  assert.fail('the config was accepted');
}

void describe('encryption config', () => {
  void test('absent: no encryption, no keys to try', () => {
    const config = parseConfig(base(), { env: {} });
    assert.equal(config.encryption, undefined);
    assert.deepEqual(decryptionPassphrases(config), []);
  });

  void test('passphrase and previous passphrases from env, file or inline become Secrets, tried in order', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'enc-config-'));
    try {
      await writeFile(join(dir, 'old'), 'an-older-passphrase-2\n');
      const config = parseConfig(base({ encryption: { passphrase: { env: 'VB_PASS' }, previousPassphrases: [{ file: join(dir, 'old') }, 'inline-older-passphrase-1'] } }), { env: { VB_PASS: 'the-current-passphrase' } });
      assert.deepEqual(decryptionPassphrases(config).map((s) => s.reveal()), ['the-current-passphrase', 'an-older-passphrase-2', 'inline-older-passphrase-1']);
      assert.ok(config.encryption?.passphrase instanceof Secret);
      const text = JSON.stringify(config);
      for (const value of ['the-current-passphrase', 'an-older-passphrase-2', 'inline-older-passphrase-1']) assert.ok(!text.includes(value), `${value} serialised`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void test('bad encryption settings name the field and never the value', () => {
    assert.deepEqual(issuesOf(base({ encryption: {} })), ['encryption: set recipients (age public keys, `age-keygen -y key.txt`) or passphrase: new backups need something to be encrypted to']);
    assert.deepEqual(issuesOf(base({ encryption: { passphrase: 'long-enough-passphrase', cipher: 'aes' } })), ['encryption.cipher: unknown field; remove it or check its spelling']);
    assert.deepEqual(issuesOf(base({ encryption: { passphrase: { env: 'VB_UNSET_PASS' } } })), ['encryption.passphrase: environment variable VB_UNSET_PASS is not set; export it or use { file: PATH }']);
    assert.match(issuesOf(base({ encryption: { passphrase: 'long-enough-passphrase', previousPassphrases: [{ file: '/nonexistent/old-pass' }] } })).join('\n'), /^encryption\.previousPassphrases\[0\]: cannot read secret file \/nonexistent\/old-pass/);
    const short = issuesOf(base({ encryption: { passphrase: { env: 'VB_SHORT' } } }), { VB_SHORT: 'hunter2' });
    assert.equal(short.length, 1);
    assert.match(short[0]!, /^encryption\.passphrase: shorter than 12 characters/);
    assert.ok(!short[0]!.includes('hunter2'));
    assert.match(issuesOf(base({ encryption: { passphrase: 42 } })).join('\n'), /^encryption\.passphrase: expected a string, \{ env: NAME \} or \{ file: PATH \}/);
  });

  void test('recipients are checked at load: each problem names its index, a pasted private key is never echoed', async () => {
    const id = await generateIdentity();
    const good = await identityToRecipient(id);
    const config = parseConfig(base({ encryption: { recipients: [good] } }), { env: {} });
    assert.deepEqual(config.encryption?.recipients, [good]);
    assert.equal(config.encryption?.passphrase, undefined);
    const typo = `${good.slice(0, -1)}${good.endsWith('q') ? 'p' : 'q'}`;
    const issues = issuesOf(base({ encryption: { recipients: [good, id, 'age1pq1abc', 'ssh-ed25519 AAAA', typo, good] } }));
    assert.deepEqual(issues.map((i) => i.split(':')[0]), ['encryption.recipients[1]', 'encryption.recipients[2]', 'encryption.recipients[3]', 'encryption.recipients[4]', 'encryption.recipients[5]']);
    assert.match(issues[0]!, /private key .* encryption\.identities/);
    assert.match(issues[1]!, /post-quantum/);
    assert.match(issues[2]!, /not an age X25519 public key/);
    assert.match(issues[3]!, /checksum/);
    assert.match(issues[4]!, /the same key as encryption\.recipients\[0\]/);
    assert.ok(!issues.join('\n').includes(id), 'the private key was echoed');
  });

  void test('identities are read only when something decrypts: a worker without the key file loads the config', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'enc-identities-'));
    try {
      const id = await generateIdentity();
      const recipient = await identityToRecipient(id);
      const keyFile = join(dir, 'key.txt');
      const raw = base({ encryption: { recipients: [recipient], identities: [{ file: keyFile }] } });
      const worker = parseConfig(raw, { env: {} });
      assert.equal(worker.encryption?.identities.configured, 1);
      assert.ok(!JSON.stringify(worker).includes('AGE-SECRET-KEY'));
      assert.throws(() => decryptionKeys(worker.encryption).identities(), (err: unknown) => err instanceof ConfigError && /^encryption\.identities\[0\]: cannot read secret file/.test(err.message));

      // As age-keygen writes it: comments, the key, a trailing newline.
      await writeFile(keyFile, `# created: 2026-11-26T02:00:00+01:00\n# public key: ${recipient}\n${id}\n`, { mode: 0o600 });
      const [identity] = decryptionKeys(parseConfig(raw, { env: {} }).encryption).identities();
      assert.equal(identity?.reveal(), id);
      assert.equal(String(identity), '**redacted**');

      // The restore drill after each backup needs a key: with recipients and no identities, say so at load.
      assert.match(issuesOf(base({ verify: { afterBackup: true }, encryption: { recipients: [recipient] } })).join('\n'), /^verify\.afterBackup: .*encryption\.identities/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

void describe('encryptOnce', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'encrypt-once-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void test('a retried upload gets the same bytes (same file key), not a fresh encryption', async () => {
    const gz = join(dir, `dump-${randomBytes(3).toString('hex')}.sql.gz`);
    const plain = gzipSync(randomBytes(100_000));
    await writeFile(gz, plain);
    const id = await generateIdentity();
    const to = { recipients: [await identityToRecipient(id)] };
    const first = await encryptOnce(gz, to);
    const stored = await readFile(first.path);
    assert.equal(first.path, `${gz}.age`);
    assert.equal(first.bytes, stored.length);
    assert.equal(first.sha256, createHash('sha256').update(stored).digest('hex'));
    assert.deepEqual(first.encryption, { algorithm: 'age', recipients: to.recipients, passphrase: null });
    const again = await encryptOnce(gz, to);
    assert.deepEqual(again, first);
    assert.deepEqual(await readFile(again.path), stored, 'the file was not rewritten');

    const decrypter = new Decrypter();
    decrypter.addIdentity(id);
    assert.deepEqual(Buffer.from(await decrypter.decrypt(stored)), plain);

    // Interrupted before the sidecar: encrypted again from scratch, under a new file key.
    await rm(`${first.path}.json`);
    const redone = await encryptOnce(gz, to);
    assert.notEqual(redone.sha256, first.sha256);

    // A recipient added before the retry (new config): encrypted again, to both.
    const both = { recipients: [...to.recipients, await identityToRecipient(await generateIdentity())] };
    const widened = await encryptOnce(gz, both);
    assert.deepEqual(widened.encryption.recipients, both.recipients);
    assert.notEqual(widened.sha256, redone.sha256);
  });
});
