import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { getDefaultHighWaterMark, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import { Secret } from '../../src/config/secret.ts';
import { createDecryptStream } from '../../src/crypto/decrypt-stream.ts';
import { createEncryptStream } from '../../src/crypto/encrypt-stream.ts';
import { encryptionAlgorithm, headerBytes, tagBytes } from '../../src/crypto/format.ts';
import { defaultScrypt, deriveKey, type DerivedKey } from '../../src/crypto/key-derivation.ts';
import { BackupError } from '../../src/errors.ts';

/** Small scrypt cost for the many cases here; one test runs the default. */
const fast = { N: 2 ** 10, r: 8, p: 1 };
const chunkBytes = 1024;
const passphrase = new Secret(`correct horse ${randomBytes(4).toString('hex')}`, 'test');

/** Feeds `input` in pieces of `piece` bytes, so chunk boundaries fall inside writes. */
function source(input: Buffer, piece = 777): Readable {
  const parts: Buffer[] = [];
  for (let at = 0; at < input.length; at += piece) parts.push(input.subarray(at, at + piece));
  return Readable.from(parts);
}

async function collect(stream: Readable | NodeJS.ReadableStream, ...through: NodeJS.ReadWriteStream[]): Promise<Buffer> {
  const out: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk);
      cb();
    },
  });
  await pipeline(stream, ...(through as [NodeJS.ReadWriteStream]), sink);
  return Buffer.concat(out);
}

async function encrypt(plain: Buffer, options: { chunkBytes?: number; scrypt?: typeof fast } = {}): Promise<Buffer> {
  return collect(source(plain), createEncryptStream(passphrase, { scrypt: fast, chunkBytes, ...options }));
}

async function decrypt(sealed: Buffer, keys: Secret | Secret[] | DerivedKey = passphrase, piece = 555): Promise<Buffer> {
  return collect(source(sealed, piece), createDecryptStream(keys, { label: 'test object' }));
}

async function rejectsWith(promise: Promise<unknown>, code: string, what: string): Promise<BackupError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof BackupError, `${what}: expected a BackupError, got ${String(err)}`);
    assert.equal(err.code, code, `${what}: ${err.message}`);
    assert.equal(err.permanent, true);
    return err;
  }
  assert.fail(`${what}: was not detected`);
}

void describe('aes-256-gcm-stream-v1', () => {
  void test('round trips 0 B, 1 B, one chunk exactly, and many chunks plus a partial one', async () => {
    for (const size of [0, 1, chunkBytes - 1, chunkBytes, chunkBytes + 1, 5 * chunkBytes, 7 * chunkBytes + 123]) {
      const plain = randomBytes(size);
      const sealed = await encrypt(plain);
      const chunks = Math.max(1, Math.ceil(size / chunkBytes));
      assert.equal(sealed.length, headerBytes + size + chunks * tagBytes, `size of ${size} B sealed`);
      assert.deepEqual(await decrypt(sealed), plain, `${size} B round trip`);
      // Byte-at-a-time writes are the worst case for the buffering.
      if (size <= chunkBytes + 1) assert.deepEqual(await decrypt(sealed, passphrase, 1), plain, `${size} B one byte at a time`);
    }
  });

  void test('the same input under the same passphrase encrypts differently (fresh salt and nonce prefix)', async () => {
    const plain = Buffer.from('the same rows');
    const a = await encrypt(plain);
    const b = await encrypt(plain);
    assert.notDeepEqual(a.subarray(0, headerBytes), b.subarray(0, headerBytes));
    assert.ok(!a.includes(plain) && !b.includes(plain));
  });

  void test('the default parameters and chunk size: 64 KiB chunks, scrypt N=2^15, manifest info', async () => {
    const stream = createEncryptStream(passphrase);
    const plain = randomBytes(200 * 1024);
    const sealed = await collect(source(plain, 100_000), stream);
    assert.deepEqual(stream.info, { algorithm: encryptionAlgorithm, kdf: 'scrypt', N: 2 ** 15, r: 8, p: 1, salt: stream.header.salt.toString('base64'), chunkBytes: 64 * 1024 });
    assert.equal(sealed.length, headerBytes + plain.length + 4 * tagBytes);
    assert.deepEqual(await decrypt(sealed), plain);
  });

  void test('a derived key encrypts and decrypts without deriving again', async () => {
    const key = await deriveKey(passphrase, randomBytes(16), fast);
    const plain = randomBytes(3000);
    const sealed = await collect(source(plain), createEncryptStream(key, { chunkBytes }));
    assert.deepEqual(await decrypt(sealed, key), plain);
    assert.deepEqual(await decrypt(sealed, passphrase), plain, 'the passphrase opens it too');
    assert.equal(defaultScrypt.N, 2 ** 15);
  });

  void test('a wrong passphrase is DECRYPT_FAILED, and the message never contains a passphrase', async () => {
    const sealed = await encrypt(randomBytes(3000));
    const wrong = new Secret('not-the-passphrase-zz9', 'test');
    const err = await rejectsWith(decrypt(sealed, wrong), 'DECRYPT_FAILED', 'wrong passphrase');
    assert.match(err.message, /wrong encryption\.passphrase or the object was altered/);
    assert.ok(!err.message.includes(wrong.reveal()) && !err.message.includes(passphrase.reveal()));
    assert.ok(!JSON.stringify(err.details).includes(wrong.reveal()));
  });

  void test('older passphrases are tried in order after the current one', async () => {
    const sealed = await encrypt(randomBytes(2500));
    const plain = await decrypt(sealed, [new Secret('new-one-1234', 'test'), new Secret('older-5678', 'test'), passphrase]);
    assert.equal(plain.length, 2500);
    await rejectsWith(decrypt(sealed, [new Secret('new-one-1234', 'test'), new Secret('older-5678', 'test')]), 'DECRYPT_FAILED', 'none of the passphrases');
  });

  void test('a flipped bit anywhere (header, ciphertext, tag) is detected', async () => {
    const plain = randomBytes(3 * chunkBytes + 10);
    const sealed = await encrypt(plain);
    const segment = chunkBytes + tagBytes;
    const positions: [string, number, string[]][] = [
      ['magic', 0, ['DECRYPT_BAD_FORMAT']],
      ['scrypt N', 8, ['DECRYPT_BAD_FORMAT', 'DECRYPT_FAILED']],
      ['scrypt r', 9, ['DECRYPT_BAD_FORMAT', 'DECRYPT_FAILED']],
      ['chunk size', 13, ['DECRYPT_BAD_FORMAT', 'DECRYPT_FAILED']],
      ['salt', 20, ['DECRYPT_FAILED']],
      ['nonce prefix', headerBytes - 1, ['DECRYPT_FAILED']],
      ['first ciphertext byte', headerBytes, ['DECRYPT_FAILED']],
      ['second chunk ciphertext', headerBytes + segment + 100, ['DECRYPT_FAILED']],
      ['second chunk tag', headerBytes + 2 * segment - 1, ['DECRYPT_FAILED']],
      ['last chunk tag', sealed.length - 1, ['DECRYPT_FAILED']],
    ];
    for (const [what, at, codes] of positions) {
      const bad = Buffer.from(sealed);
      bad[at] = (bad[at] ?? 0) ^ 0x01;
      try {
        await decrypt(bad);
        assert.fail(`a flipped bit in the ${what} was not detected`);
      } catch (err) {
        assert.ok(err instanceof BackupError && codes.includes(err.code), `${what}: ${String(err)}`);
      }
    }
  });

  void test('truncation, swapped or repeated chunks and appended bytes are detected', async () => {
    const plain = randomBytes(4 * chunkBytes);
    const sealed = await encrypt(plain);
    const segment = chunkBytes + tagBytes;
    const chunk = (i: number): Buffer => sealed.subarray(headerBytes + i * segment, headerBytes + (i + 1) * segment);
    const header = sealed.subarray(0, headerBytes);
    const cases: [string, Buffer][] = [
      ['last chunk cut short', sealed.subarray(0, sealed.length - 1)],
      ['last chunk cut to less than a tag', sealed.subarray(0, sealed.length - segment + 5)],
      ['whole last chunk dropped (cut at a chunk boundary)', sealed.subarray(0, sealed.length - segment)],
      ['only the header', header],
      ['chunks 1 and 2 swapped', Buffer.concat([header, chunk(0), chunk(2), chunk(1), chunk(3)])],
      ['chunk 1 repeated', Buffer.concat([header, chunk(0), chunk(1), chunk(1), chunk(2), chunk(3)])],
      ['garbage appended', Buffer.concat([sealed, randomBytes(40)])],
      ['a whole chunk appended', Buffer.concat([sealed, chunk(1)])],
      ['one byte appended', Buffer.concat([sealed, Buffer.from([0])])],
    ];
    for (const [what, bad] of cases) await rejectsWith(decrypt(bad), 'DECRYPT_FAILED', what);
  });

  void test('not our format: a gzip file, an empty file, a short file', async () => {
    await rejectsWith(decrypt(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3])), 'DECRYPT_BAD_FORMAT', 'gzip');
    await rejectsWith(decrypt(Buffer.alloc(0)), 'DECRYPT_BAD_FORMAT', 'empty');
    await rejectsWith(decrypt(Buffer.from('VCSAENC1')), 'DECRYPT_BAD_FORMAT', 'magic only');
    await rejectsWith(decrypt(Buffer.from('plain text, certainly longer than the header of the format')), 'DECRYPT_BAD_FORMAT', 'text');
  });

  void test('backpressure: a slow reader holds the encrypt side to about one chunk in flight', async () => {
    const enc = createEncryptStream(passphrase, { scrypt: fast, chunkBytes });
    const chunks = 1000;
    const total = chunks * chunkBytes;
    let produced = 0;
    const input = new Readable({
      read() {
        if (produced >= total) {
          this.push(null);
          return;
        }
        produced += chunkBytes;
        this.push(Buffer.alloc(chunkBytes, 7));
      },
    });
    let consumed = 0;
    let maxAhead = 0;
    const out = new Writable({
      highWaterMark: chunkBytes,
      write(chunk: Buffer, _enc, cb) {
        consumed += chunk.length;
        maxAhead = Math.max(maxAhead, produced - consumed);
        setImmediate(cb);
      },
    });
    await pipeline(input, enc, out);
    assert.equal(consumed, headerBytes + total + chunks * tagBytes);
    // The stream buffers bound how far input runs ahead: the input's, both sides of the
    // transform (the runtime's default: 16 KiB on Node 20, 64 KiB from Node 22), and a few
    // chunks in flight. Without backpressure it would run all 1,000 chunks ahead.
    const bound = 4 * getDefaultHighWaterMark(false) + 8 * chunkBytes;
    assert.ok(maxAhead < bound, `input ran ${maxAhead} bytes ahead of the reader (bound ${bound})`);
  });
});
