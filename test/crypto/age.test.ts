import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { Decrypter, Encrypter, generateIdentity, identityToRecipient } from 'age-encryption';
import type { ManifestArtifact } from '../../src/backup/manifest.ts';
import { Secret } from '../../src/config/secret.ts';
import { AgeIdentities, bech32Bytes, recipientProblem } from '../../src/crypto/age-keys.ts';
import { ScryptPassphraseIdentity, ScryptPassphraseRecipient } from '../../src/crypto/age-scrypt.ts';
import { createAgeEncryptStream, describeAgeTarget, type AgeTarget } from '../../src/crypto/age-stream.ts';
import { DecryptionKeys } from '../../src/crypto/key-ring.ts';
import { openArtifact } from '../../src/crypto/open-artifact.ts';
import { rejectsWithCode } from '../support/poll.ts';

async function collect(stream: Readable): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(stream, new Writable({ write: (chunk: Buffer, _e, cb) => void (out.push(Buffer.from(chunk)), cb()) }));
  return Buffer.concat(out);
}

/** Feeds `input` in odd-sized pieces, so chunk boundaries fall inside writes. */
async function encrypt(input: Buffer, to: AgeTarget): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; at < input.length; at += 7777) parts.push(input.subarray(at, at + 7777));
  const out: Buffer[] = [];
  await pipeline(Readable.from(parts), await createAgeEncryptStream(to), new Writable({ write: (chunk: Buffer, _e, cb) => void (out.push(Buffer.from(chunk)), cb()) }));
  return Buffer.concat(out);
}

void describe('age encryption (age-encryption over Node streams)', () => {
  let dir: string;
  let ids: string[];
  let recipients: string[];
  let n = 0;

  const keyFile = async (...identities: string[]): Promise<string> => {
    const path = join(dir, `key-${n++}.txt`);
    await writeFile(path, identities.map((id) => `# created: 2026-11-26T02:00:00Z\n# public key: ${'(elided)'}\n${id}\n`).join('\n'), { mode: 0o600 });
    return path;
  };
  const keysFor = async (identities: string[], passphrases: Secret[] = []): Promise<DecryptionKeys> =>
    new DecryptionKeys(passphrases, identities.length > 0 ? new AgeIdentities([{ file: await keyFile(...identities) }], {}) : null);
  const open = async (sealed: Buffer, to: AgeTarget, keys: DecryptionKeys): Promise<Buffer> => {
    const path = join(dir, `obj-${n++}.gz.age`);
    await writeFile(path, sealed);
    const artifact = { name: 'vcdb', key: `vcsa/vc01/20261126T020000.000Z/${n}.gz.age`, file: 'postgres.sql.gz.age', encryption: describeAgeTarget(to) } as unknown as ManifestArtifact;
    return collect(await openArtifact(path, artifact, keys));
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'age-test-'));
    ids = await Promise.all([generateIdentity(), generateIdentity(), generateIdentity()]);
    recipients = await Promise.all(ids.map((id) => identityToRecipient(id)));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void test('to two recipients: either identity opens it, sizes 0 B to several 64 KiB chunks round trip', async () => {
    const to = { recipients: [recipients[0]!, recipients[1]!] };
    for (const size of [0, 1, 64 * 1024, 64 * 1024 + 1, 300_000]) {
      const plain = randomBytes(size);
      const sealed = await encrypt(plain, to);
      assert.equal(sealed.subarray(0, 22).toString('latin1'), 'age-encryption.org/v1\n');
      assert.equal((sealed.toString('latin1').match(/\n-> X25519 /g) ?? []).length, 2, 'one stanza per recipient');
      assert.deepEqual(await open(sealed, to, await keysFor([ids[1]!])), plain, `${size} B with the second identity`);
      if (size === 300_000) assert.deepEqual(await open(sealed, to, await keysFor([ids[2]!, ids[0]!])), plain, 'a key file with an unrelated identity first');
    }
  });

  void test('a wrong identity is DECRYPT_FAILED naming the recipients and the configured public key, never a private key', async () => {
    const to = { recipients: [recipients[0]!] };
    const sealed = await encrypt(randomBytes(1000), to);
    const err = await rejectsWithCode(open(sealed, to, await keysFor([ids[2]!])), 'DECRYPT_FAILED');
    assert.match(err.message, new RegExp(`encrypted to ${recipients[0]!}`));
    assert.match(err.message, new RegExp(`hold the keys of ${recipients[2]!}`));
    for (const id of ids) assert.ok(!err.message.includes(id) && !JSON.stringify(err.details).includes(id), 'a private key in the error');
  });

  void test('passphrase (age scrypt): opens with the passphrase, and interoperates with the library’s own scrypt', async () => {
    const passphrase = new Secret(`pass-${randomBytes(4).toString('hex')}-phrase`, 'test');
    const plain = randomBytes(70_000);
    // Ours through the same path backups take, at a small work factor (age's 18 is checked
    // against `age -d` in encrypted-backup.test.ts): the file records it.
    const to = { passphrase, workFactor: 12 };
    const sealed = await encrypt(plain, to);
    assert.match(sealed.subarray(0, 120).toString('latin1'), /\n-> scrypt [A-Za-z0-9+/]{22} 12\n/);
    assert.deepEqual(await open(sealed, to, await keysFor([], [new Secret('an-older-passphrase', 't'), passphrase])), plain, 'tried after an older one');
    const wrong = await rejectsWithCode(open(sealed, to, await keysFor([ids[0]!], [new Secret('not-it-at-all', 't')])), 'DECRYPT_FAILED');
    assert.match(wrong.message, /encrypted with a passphrase/);
    assert.ok(!wrong.message.includes(passphrase.reveal()) && !wrong.message.includes('not-it-at-all'));

    // The library's pure-JS scrypt reads ours, and ours reads the library's (small work factor: this is about the format).
    const library = new Decrypter();
    library.addPassphrase(passphrase.reveal());
    const small = new Encrypter();
    small.addRecipient(new ScryptPassphraseRecipient(passphrase, 10));
    assert.deepEqual(Buffer.from(await library.decrypt(await small.encrypt(plain))), plain);
    const theirs = new Encrypter();
    theirs.setScryptWorkFactor(10);
    theirs.setPassphrase(passphrase.reveal());
    const ours = new Decrypter();
    ours.addIdentity(new ScryptPassphraseIdentity(passphrase));
    assert.deepEqual(Buffer.from(await ours.decrypt(await theirs.encrypt(plain))), plain);
  });

  void test('altered, cut short or not age: DECRYPT_FAILED or DECRYPT_BAD_FORMAT, before any plaintext is trusted', async () => {
    const to = { recipients: [recipients[0]!] };
    const keys = await keysFor([ids[0]!]);
    const sealed = await encrypt(randomBytes(200_000), to);
    const headerEnd = sealed.indexOf('\n--- ') + 1;
    const flip = (at: number): Buffer => {
      const bad = Buffer.from(sealed);
      bad[at] = (bad[at] ?? 0) ^ 0x01;
      return bad;
    };
    await rejectsWithCode(open(flip(sealed.length - 1), to, keys), 'DECRYPT_FAILED');
    await rejectsWithCode(open(flip(sealed.length - 100_000), to, keys), 'DECRYPT_FAILED');
    await rejectsWithCode(open(sealed.subarray(0, sealed.length - 5), to, keys), 'DECRYPT_FAILED');
    await rejectsWithCode(open(sealed.subarray(0, 22 + 16 + 2 * (64 * 1024 + 16)), to, keys), 'DECRYPT_FAILED');
    // The MAC line: the header no longer authenticates under the file key. Another base64
    // character, not a flipped bit (which may make an invalid one: a format error instead).
    const macAltered = Buffer.from(sealed);
    macAltered[headerEnd + 6] = macAltered[headerEnd + 6] === 0x41 ? 0x42 : 0x41;
    await rejectsWithCode(open(macAltered, to, keys), 'DECRYPT_FAILED');
    await rejectsWithCode(open(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), to, keys), 'DECRYPT_BAD_FORMAT');
    await rejectsWithCode(open(sealed.subarray(0, 30), to, keys), 'DECRYPT_BAD_FORMAT');
  });

  void test("the config's own bech32 check accepts what age-keygen makes and catches any one changed character", async () => {
    for (let i = 0; i < 20; i++) {
      const id = await generateIdentity();
      const r = await identityToRecipient(id);
      assert.equal(bech32Bytes(id, 'AGE-SECRET-KEY-')?.length, 32, id.slice(0, 20));
      assert.equal(recipientProblem(r), null, r);
    }
    const r = recipients[0]!;
    for (let at = 4; at < r.length; at++) {
      const swapped = `${r.slice(0, at)}${r[at] === 'q' ? 'p' : 'q'}${r.slice(at + 1)}`;
      assert.notEqual(recipientProblem(swapped), null, `a change at ${at} went unnoticed`);
    }
    // The library agrees with what passes: it encrypts to it.
    assert.ok((await encrypt(Buffer.from('x'), { recipients: [r] })).length > 0);
  });

  void test('identities: a key file with comments works; unreadable or malformed ones are ConfigErrors naming field and line, never the content', async () => {
    const good = await keysFor([ids[0]!, ids[1]!]);
    assert.equal(good.identities().length, 2);
    const path = join(dir, 'bad-key.txt');
    await writeFile(path, `# public key: ${recipients[0]!}\n${ids[0]!}\nAGE-SECRET-KEY-1NOTAKEY${ids[1]!.slice(24)}\n${recipients[1]!}\n`);
    const bad = new DecryptionKeys([], new AgeIdentities(['inline-is-not-a-key', { file: path }, { file: join(dir, 'missing.txt') }, { env: 'AGE_TEST_UNSET' }], {}));
    assert.equal(bad.hasIdentities, true, 'configured, not read yet');
    const err = await rejectsWithCode(Promise.resolve().then(() => bad.identities()), 'CONFIG_INVALID');
    const issues = err.message.split('\n');
    const expected = [
      'encryption.identities[0]: line 1 is not an age X25519 identity',
      'encryption.identities[1]: line 3 is not an age X25519 identity',
      'encryption.identities[1]: line 4 is not an age X25519 identity',
      `encryption.identities[2]: cannot read secret file ${join(dir, 'missing.txt')}`,
      'encryption.identities[3]: environment variable AGE_TEST_UNSET is not set',
    ];
    assert.equal(issues.length, expected.length, err.message);
    expected.forEach((prefix, i) => assert.ok(issues[i]?.startsWith(prefix), `${issues[i]} should start with ${prefix}`));
    for (const secret of [...ids, 'inline-is-not-a-key']) assert.ok(!err.message.includes(secret), 'a key in the error');
  });
});
