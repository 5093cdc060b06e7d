import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { compressOnce } from '../../src/backup/compress.ts';
import { gzipFileParallel } from '../../src/backup/parallel-gzip.ts';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Dump-like text: COPY lines with varied values, compressible but not trivially. */
function dumpLike(bytes: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line = `${i}\t${(i * 2654435761) % 100000}\tvm-${(i * 7) % 1500}\t2026-11-${String(1 + (i % 28)).padStart(2, '0')} 02:00:00+00\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join(''));
}

/**
 * Issue 11 item 4: gzip on all cores as concatenated members, readable by plain `gunzip` and
 * Node's gunzip, with the raw and compressed digests taken on the way.
 */
void describe('parallel gzip', () => {
  let dir: string;
  let source: string;
  let data: Buffer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgzip-'));
    data = Buffer.concat([dumpLike(3 * 1024 * 1024), randomBytes(100_000)]);
    source = join(dir, 'postgres.sql');
    await writeFile(source, data);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  void test('many members in order, read whole by gunzip and by Node, digests of both sides', async () => {
    const dest = join(dir, 'members.gz');
    const result = await gzipFileParallel(source, dest, { level: 6, threads: 2, blockBytes: 256 * 1024 });
    const gz = await readFile(dest);
    assert.equal(result.bytes, gz.length);
    assert.equal(result.sha256, sha256(gz));
    assert.equal(result.rawBytes, data.length);
    assert.equal(result.rawSha256, sha256(data));
    assert.ok(gz.length < data.length / 2, 'it compresses');
    const cli = spawnSync('gunzip', ['-c', dest], { maxBuffer: 64 * 1024 * 1024 });
    assert.equal(cli.status, 0, cli.stderr.toString());
    assert.ok(cli.stdout.equals(data), 'gunzip reads every member in order');
    assert.ok(gunzipSync(gz).equals(data), "Node's gunzip reads every member in order");
    assert.equal((await stat(dest)).mode & 0o777, 0o600);
  });

  void test('an empty file becomes one empty gzip member', async () => {
    const empty = join(dir, 'empty.sql');
    await writeFile(empty, '');
    const result = await gzipFileParallel(empty, join(dir, 'empty.gz'), { level: 6, threads: 2 });
    assert.equal(gunzipSync(await readFile(join(dir, 'empty.gz'))).length, 0);
    assert.equal(result.rawSha256, sha256(Buffer.alloc(0)));
  });

  void test('compressOnce writes once and reuses the result; a cancelled run leaves nothing', async () => {
    const raw = join(dir, 'once.sql');
    await writeFile(raw, data);
    const aborted = new AbortController();
    aborted.abort(new Error('shutdown'));
    await assert.rejects(compressOnce(raw, { level: 1, threads: 2 }, aborted.signal), { code: 'ABORTED' });
    await assert.rejects(stat(`${raw}.gz.tmp`), { code: 'ENOENT' });
    const first = await compressOnce(raw, { level: 1, threads: 2 });
    const again = await compressOnce(raw, { level: 9, threads: 1 });
    assert.deepEqual(again, first);
    assert.equal(first.rawSha256, sha256(data));
  });
});
