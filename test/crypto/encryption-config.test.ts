import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { encryptOnce } from '../../src/backup/encrypt.ts';
import { decryptionPassphrases, parseConfig } from '../../src/config/load.ts';
import { Secret } from '../../src/config/secret.ts';
import { createDecryptStream } from '../../src/crypto/decrypt-stream.ts';
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
  void test('absent: no encryption, no passphrases to try', () => {
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
    assert.deepEqual(issuesOf(base({ encryption: {} })), ['encryption.passphrase: required']);
    assert.deepEqual(issuesOf(base({ encryption: { passphrase: 'long-enough-passphrase', cipher: 'aes' } })), ['encryption.cipher: unknown field; remove it or check its spelling']);
    assert.deepEqual(issuesOf(base({ encryption: { passphrase: { env: 'VB_UNSET_PASS' } } })), ['encryption.passphrase: environment variable VB_UNSET_PASS is not set; export it or use { file: PATH }']);
    assert.match(issuesOf(base({ encryption: { passphrase: 'long-enough-passphrase', previousPassphrases: [{ file: '/nonexistent/old-pass' }] } })).join('\n'), /^encryption\.previousPassphrases\[0\]: cannot read secret file \/nonexistent\/old-pass/);
    const short = issuesOf(base({ encryption: { passphrase: { env: 'VB_SHORT' } } }), { VB_SHORT: 'hunter2' });
    assert.equal(short.length, 1);
    assert.match(short[0]!, /^encryption\.passphrase: shorter than 12 characters/);
    assert.ok(!short[0]!.includes('hunter2'));
    assert.match(issuesOf(base({ encryption: { passphrase: 42 } })).join('\n'), /^encryption\.passphrase: expected a string, \{ env: NAME \} or \{ file: PATH \}/);
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

  void test('a retried upload gets the same bytes (same salt), not a fresh encryption', async () => {
    const gz = join(dir, `dump-${randomBytes(3).toString('hex')}.sql.gz`);
    const plain = gzipSync(randomBytes(100_000));
    await writeFile(gz, plain);
    const passphrase = new Secret('a-passphrase-for-encrypt-once', 'test');
    const first = await encryptOnce(gz, passphrase);
    const stored = await readFile(first.path);
    assert.equal(first.path, `${gz}.enc`);
    assert.equal(first.bytes, stored.length);
    assert.equal(first.sha256, createHash('sha256').update(stored).digest('hex'));
    const again = await encryptOnce(gz, passphrase);
    assert.deepEqual(again, first);
    assert.deepEqual(await readFile(again.path), stored, 'the file was not rewritten');

    const out: Buffer[] = [];
    const dec = createDecryptStream(passphrase);
    dec.on('data', (b: Buffer) => out.push(b));
    await new Promise((resolve, reject) => dec.on('end', resolve).on('error', reject).end(stored));
    assert.deepEqual(Buffer.concat(out), plain);

    // Interrupted before the sidecar: encrypted again from scratch, under a new salt.
    await rm(`${first.path}.json`);
    const redone = await encryptOnce(gz, passphrase);
    assert.notEqual(redone.encryption.salt, first.encryption.salt);
  });
});
