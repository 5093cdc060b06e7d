/**
 * The contract every ObjectStore passes (see src/storage/object-store.ts). Each store's test file
 * calls `objectStoreContract` with a factory for a working store whose multipart threshold is
 * small (5 MiB parts), so that a 12 MiB file takes three parts. Every upload is read back and
 * compared by size and sha256: some S3 test servers store streamed bodies mangled.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { HashingStream, sha256Of, sha256OfStream } from '../../src/hashing.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { rejectsWithCode } from '../support/poll.ts';

export interface StoreUnderTest {
  readonly store: ObjectStore;
  readonly cleanup: () => Promise<void>;
}

const MiB = 1024 * 1024;

/** Writes `bytes` random bytes to `path` (in 1 MiB chunks, so big files never sit in memory) and returns their sha256. */
export async function writeRandomFile(path: string, bytes: number): Promise<string> {
  const hash = new HashingStream();
  const out = createWriteStream(path);
  hash.pipe(out);
  for (let left = bytes; left > 0; left -= MiB) {
    if (!hash.write(randomBytes(Math.min(MiB, left)))) await new Promise<void>((resolve) => hash.once('drain', () => resolve()));
  }
  hash.end();
  await finished(out);
  return hash.digest();
}

export { rejectsWithCode, sha256OfStream };

async function listKeys(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of store.list(prefix)) keys.push(info.key);
  return keys;
}

export function objectStoreContract(name: string, makeStore: () => Promise<StoreUnderTest>): void {
  void describe(`ObjectStore contract: ${name}`, () => {
    let sut: StoreUnderTest;
    let store: ObjectStore;
    let dir: string;
    let base: string;

    before(async () => {
      sut = await makeStore();
      store = sut.store;
      dir = await mkdtemp(join(tmpdir(), 'store-contract-'));
      base = `contract-${randomUUID().slice(0, 8)}`;
    });

    after(async () => {
      await store.deleteMany(await listKeys(store, `${base}/`)).catch(() => undefined);
      await sut.cleanup();
      await rm(dir, { recursive: true, force: true });
    });

    void test('a small file round-trips with the same size and sha256', async () => {
      const path = join(dir, 'small.bin');
      const sha256 = await writeRandomFile(path, 100_000);
      const key = `${base}/small/postgres.sql.gz`;
      const result = await store.putFile(key, path);
      assert.deepEqual(result, { key, bytes: 100_000, sha256 });
      assert.deepEqual(await sha256OfStream(await store.get(key)), { sha256, bytes: 100_000 });
      const bytes = await store.getBytes(key);
      assert.equal(sha256Of(bytes), sha256);
      const info = await store.head(key);
      assert.equal(info?.bytes, 100_000);
      assert.ok(info.lastModified instanceof Date);
    });

    void test('an empty file round-trips', async () => {
      const path = join(dir, 'empty.bin');
      await writeFile(path, '');
      const key = `${base}/empty/file`;
      const result = await store.putFile(key, path);
      assert.equal(result.bytes, 0);
      assert.equal(result.sha256, sha256Of(''));
      assert.equal((await store.getBytes(key)).length, 0);
    });

    void test('a multipart file (three parts) round-trips and reports progress', async () => {
      const path = join(dir, 'multi.bin');
      const size = 12 * MiB + 12345;
      const sha256 = await writeRandomFile(path, size);
      const key = `${base}/multi/inventory_services.DB.gz`;
      const calls: Array<[number, number]> = [];
      const result = await store.putFile(key, path, { onProgress: (sent, total) => calls.push([sent, total]) });
      assert.deepEqual(result, { key, bytes: size, sha256 });
      assert.deepEqual(await sha256OfStream(await store.get(key)), { sha256, bytes: size });
      assert.ok(calls.length >= 2, `expected progress per part, got ${JSON.stringify(calls)}`);
      assert.ok(calls.some(([sent]) => sent > 0 && sent < size), 'expected progress before the end');
      for (const [i, [sent, total]] of calls.entries()) {
        assert.equal(total, size);
        if (i > 0) assert.ok(sent >= calls[i - 1]![0], 'progress must not go backwards');
      }
      assert.equal(calls.at(-1)![0], size);
    });

    void test('the caller may pass the sha256 it computed while writing', async () => {
      const path = join(dir, 'known.bin');
      const sha256 = await writeRandomFile(path, 50_000);
      const result = await store.putFile(`${base}/known/f`, path, { expectedSha256: sha256 });
      assert.equal(result.sha256, sha256);
      assert.equal((await store.head(`${base}/known/f`))?.sha256, sha256, 'head returns the sha256 recorded with the object');
    });

    void test('putBytes round-trips and getBytes returns the bytes', async () => {
      const body = Buffer.from(JSON.stringify({ format: 1, artifacts: [] }));
      const key = `${base}/bytes/manifest.json`;
      const result = await store.putBytes(key, body, { contentType: 'application/json' });
      assert.deepEqual(result, { key, bytes: body.length, sha256: sha256Of(body) });
      assert.deepEqual(await store.getBytes(key), body);
      assert.equal((await store.head(key))?.sha256, result.sha256, 'head returns the sha256 recorded with the object');
    });

    void test('putting the same key again overwrites it', async () => {
      const key = `${base}/overwrite/f`;
      const first = join(dir, 'first.bin');
      const second = join(dir, 'second.bin');
      await writeRandomFile(first, 70_000);
      const sha2 = await writeRandomFile(second, 30_000);
      await store.putFile(key, first);
      const result = await store.putFile(key, second);
      assert.equal(result.sha256, sha2);
      assert.deepEqual(await sha256OfStream(await store.get(key)), { sha256: sha2, bytes: 30_000 });
      assert.deepEqual(await listKeys(store, `${base}/overwrite/`), [key]);
    });

    void test('list yields every object under a prefix, in key order, and nothing else', async () => {
      const prefix = `${base}/list/`;
      const names = ['f', 'b/2', 'a', 'c', 'b/1', 'e', 'd', 'g.json'];
      for (const n of names) await store.putBytes(`${prefix}${n}`, Buffer.from(n));
      await store.putBytes(`${base}/listx/not-mine`, Buffer.from('x'));
      const listed: string[] = [];
      for await (const info of store.list(prefix)) {
        listed.push(info.key);
        assert.equal(info.bytes, info.key.slice(prefix.length).length);
        assert.ok(info.lastModified instanceof Date);
      }
      assert.deepEqual(listed, names.map((n) => `${prefix}${n}`).sort());
      assert.deepEqual(await listKeys(store, `${base}/nothing-here/`), []);
    });

    void test('deleteMany deletes, and is idempotent for missing keys', async () => {
      const keys = [`${base}/del/a`, `${base}/del/b`, `${base}/del/c`];
      for (const k of keys) await store.putBytes(k, Buffer.from(k));
      await store.putBytes(`${base}/del-keep/k`, Buffer.from('keep'));
      await store.deleteMany([...keys, `${base}/del/never-existed`, keys[0]!]);
      assert.deepEqual(await listKeys(store, `${base}/del/`), []);
      await store.deleteMany(keys);
      await store.deleteMany([]);
      assert.notEqual(await store.head(`${base}/del-keep/k`), null);
    });

    void test('head is null and get/getBytes reject OBJECT_NOT_FOUND for a missing key', async () => {
      assert.equal(await store.head(`${base}/missing/x`), null);
      const err = await rejectsWithCode(store.get(`${base}/missing/x`), 'OBJECT_NOT_FOUND');
      assert.match(err.message, /missing\/x/);
      await rejectsWithCode(store.getBytes(`${base}/missing/x`), 'OBJECT_NOT_FOUND');
    });

    void test('an upload aborted mid-way rejects ABORTED and leaves no object', async () => {
      const path = join(dir, 'abort.bin');
      const size = 30 * MiB;
      await writeRandomFile(path, size);
      const key = `${base}/abort/f`;
      const controller = new AbortController();
      let abortedAt = -1;
      const upload = store.putFile(key, path, {
        signal: controller.signal,
        onProgress: (sent) => {
          if (abortedAt < 0 && sent > 0 && sent < size) {
            abortedAt = sent;
            controller.abort(new Error('operator cancelled'));
          }
        },
      });
      await rejectsWithCode(upload, 'ABORTED');
      assert.ok(abortedAt > 0, 'the abort happened mid-upload');
      assert.equal(await store.head(key), null);
      assert.deepEqual(await listKeys(store, `${base}/abort/`), []);
    });

    void test('an already aborted signal uploads nothing', async () => {
      const path = join(dir, 'pre-abort.bin');
      await writeRandomFile(path, 1000);
      const key = `${base}/pre-abort/f`;
      await rejectsWithCode(store.putFile(key, path, { signal: AbortSignal.abort() }), 'ABORTED');
      await rejectsWithCode(store.putBytes(key, Buffer.from('x'), { signal: AbortSignal.abort() }), 'ABORTED');
      assert.equal(await store.head(key), null);
    });

    void test('keys with a colon are refused before anything is sent', async () => {
      const path = join(dir, 'colon.bin');
      await writeRandomFile(path, 1000);
      const bad = `${base}/colon/2026-01-01T02:00:00Z/f`;
      const err = await rejectsWithCode(store.putFile(bad, path), 'S3_BAD_KEY');
      assert.equal(err.permanent, true);
      await rejectsWithCode(store.putBytes(bad, Buffer.from('x')), 'S3_BAD_KEY');
      await rejectsWithCode(store.get(bad), 'S3_BAD_KEY');
      assert.deepEqual(await listKeys(store, `${base}/colon/`), []);
    });

    void test('a missing local file is a clear error', async () => {
      const err = await rejectsWithCode(store.putFile(`${base}/nofile/f`, join(dir, 'does-not-exist')), 'LOCAL_FILE_UNREADABLE');
      assert.match(err.message, /does-not-exist/);
      await rejectsWithCode(store.putFile(`${base}/nofile/f`, join(dir, 'does-not-exist'), { expectedSha256: sha256Of('') }), 'LOCAL_FILE_UNREADABLE');
      assert.equal(await store.head(`${base}/nofile/f`), null);
    });

    void test('abortIncompleteUploads finds nothing to abort where nothing was started', async () => {
      assert.equal(await store.abortIncompleteUploads(`${base}/no-uploads/`, new Date()), 0);
    });
  });
}
