/**
 * `npm run bench`: throughput and memory of the backup data path, each reported as a ratio
 * against a baseline measured in the same run on the same data (so the numbers mean something on
 * any machine). Not a test: nothing here asserts a time.
 *
 *   dump      local executor streaming a dump into the spool (with sha256)  vs  the shell writing the file itself
 *   compress  compressOnce (Node zlib, level 6, sha256)                       vs  `gzip -6` of the same file
 *   upload    putFile to S3 (multipart, sha256, verify by download)           vs  a plain lib-storage multipart Upload
 *   memory    peak RSS growth while streaming the dump                        vs  the dump's size
 *   age       encryptOnce of the gzip to a recipient (age-encryption, sha256) vs  Debian's `age -r` on the same file
 *   memory    peak RSS growth while age-encrypting                            vs  the gzip's size
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { compressOnce } from '../src/backup/compress.ts';
import { encryptOnce } from '../src/backup/encrypt.ts';
import { dumpToSpool } from '../src/backup/dump.ts';
import { parseConfig } from '../src/config/load.ts';
import { LocalExecutor } from '../src/executors/local.ts';
import { silentLogger } from '../src/log.ts';
import { startEmbeddedS3 } from '../src/storage/embedded-s3.ts';
import { createS3ObjectStore } from '../src/storage/s3.ts';

const sizeMiB = Number(process.env['BENCH_MIB'] ?? 128);
const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);

interface Row {
  readonly name: string;
  readonly measured: number;
  readonly baseline: number;
  readonly unit: string;
  readonly note: string;
}

async function best(fn: () => Promise<void>): Promise<number> {
  let fastest = Infinity;
  for (let i = 0; i < rounds; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    fastest = Math.min(fastest, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return fastest;
}

/** SQL COPY-style lines: about as compressible as a real VCDB dump. */
async function writeDumpLike(path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path);
  let written = 0;
  let i = 0;
  while (written < bytes) {
    const lines: string[] = [];
    for (let k = 0; k < 2000; k++, i++) {
      lines.push(`${i}\tvm-${i * 7}\t2026-11-26 02:00:${String(i % 60).padStart(2, '0')}+00\tdatacenter-${i % 13}/host-${i % 97}/vm-${i}\t${(i * 2654435761) % 4294967296}\n`);
    }
    const chunk = lines.join('');
    written += Buffer.byteLength(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await finished(out);
}

const mibPerSec = (bytes: number, ms: number): number => bytes / 1024 / 1024 / (ms / 1000);

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vcsa-bench-'));
  const rows: Row[] = [];
  const s3 = await startEmbeddedS3();
  try {
    // A dump-like file: SQL COPY lines, as compressible as a real VCDB dump tends to be.
    const source = join(dir, 'source.sql');
    await writeDumpLike(source, sizeMiB * 1024 * 1024);
    const bytes = (await stat(source)).size;
    const executor = new LocalExecutor({ shell: '/bin/bash' }, silentLogger);

    // dump: our streaming path vs the shell copying the file on its own.
    let n = 0;
    let peakRss = 0;
    const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 5);
    const rssBefore = process.memoryUsage().rss;
    const dumpMs = await best(async () => {
      const spool = join(dir, `spool-${n++}`);
      await mkdir(spool);
      await dumpToSpool(executor, { name: 'vcdb', file: 'postgres.sql', format: 'plain-sql', dump: `cat ${source}`, restore: '' }, spool, { timeoutMs: 600_000 });
    });
    clearInterval(rssTimer);
    const baseDumpMs = await best(() => Promise.resolve(void spawnSync('bash', ['-c', `cat ${source} > ${join(dir, 'shell-copy.sql')}`])));
    rows.push({ name: 'dump → spool', measured: mibPerSec(bytes, dumpMs), baseline: mibPerSec(bytes, baseDumpMs), unit: 'MiB/s', note: 'vs `cat > file`' });
    rows.push({ name: 'memory while dumping', measured: (peakRss - rssBefore) / 1024 / 1024, baseline: bytes / 1024 / 1024, unit: 'MiB', note: 'RSS growth vs dump size' });

    // compress: Node zlib (with sha256) vs the gzip CLI.
    let c = 0;
    const gzMs = await best(async () => {
      const copy = join(dir, `c${c++}.sql`);
      execFileSync('cp', [source, copy]);
      await compressOnce(copy, 6);
    });
    const cpMs = await best(() => Promise.resolve(void execFileSync('cp', [source, join(dir, 'cp-only.sql')])));
    const baseGzMs = await best(() => Promise.resolve(void spawnSync('bash', ['-c', `gzip -6 -c ${source} > ${join(dir, 'cli.gz')}`])));
    rows.push({ name: 'gzip', measured: mibPerSec(bytes, gzMs - cpMs), baseline: mibPerSec(bytes, baseGzMs), unit: 'MiB/s', note: 'vs `gzip -6`' });

    // upload: putFile (multipart + verify by download) vs one PutObject of the same bytes.
    const gz = await compressOnce(source, 6);

    // age: what the upload step does to the gzip (streaming, with sha256) vs the age CLI (Go).
    const recipient = await identityToRecipient(await generateIdentity());
    let e = 0;
    let agePeak = 0;
    const ageRssBefore = process.memoryUsage().rss;
    const ageTimer = setInterval(() => (agePeak = Math.max(agePeak, process.memoryUsage().rss)), 5);
    const ageMs = await best(async () => {
      const copy = join(dir, `e${e++}.gz`);
      execFileSync('cp', [gz.path, copy]);
      await encryptOnce(copy, { recipients: [recipient] });
    });
    clearInterval(ageTimer);
    const cpGzMs = await best(() => Promise.resolve(void execFileSync('cp', [gz.path, join(dir, 'cp-only.gz')])));
    const ageCli = spawnSync('age', ['--version']).status === 0;
    const baseAgeMs = ageCli ? await best(() => Promise.resolve(void spawnSync('age', ['-r', recipient, '-o', join(dir, 'cli.age'), gz.path]))) : NaN;
    rows.push({ name: 'age encrypt', measured: mibPerSec(gz.bytes, ageMs - cpGzMs), baseline: mibPerSec(gz.bytes, baseAgeMs), unit: 'MiB/s', note: ageCli ? 'vs `age -r` (Go)' : 'age CLI not installed: no baseline' });
    rows.push({ name: 'memory while age-encr.', measured: (agePeak - ageRssBefore) / 1024 / 1024, baseline: gz.bytes / 1024 / 1024, unit: 'MiB', note: 'RSS growth vs gzip size' });
    const config = parseConfig({
      s3: { bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, partSizeMiB: 5 },
      targets: [{ name: 'b', profile: 'postgres', executor: { type: 'local' } }],
    });
    const store = createS3ObjectStore(config.s3, silentLogger);
    let u = 0;
    const upMs = await best(async () => void (await store.putFile(`bench/u${u++}.gz`, gz.path, { expectedSha256: gz.sha256 })));
    const client = new S3Client({ endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
    let p = 0;
    const basePutMs = await best(async () => {
      await new Upload({ client, params: { Bucket: s3.bucket, Key: `bench/p${p++}.gz`, Body: createReadStream(gz.path) }, partSize: 5 * 1024 * 1024, queueSize: 4 }).done();
    });
    rows.push({ name: 'upload + verify', measured: mibPerSec(gz.bytes, upMs), baseline: mibPerSec(gz.bytes, basePutMs), unit: 'MiB/s', note: 'vs lib-storage Upload, no verify' });
    store.close();
    client.destroy();
    await executor.close();

    console.log(`vcsa-backup bench: ${sizeMiB} MiB dump-like file, best of ${rounds}, gz ${(gz.bytes / 1024 / 1024).toFixed(1)} MiB`);
    console.log(['step'.padEnd(22), 'measured'.padStart(12), 'baseline'.padStart(12), 'ratio'.padStart(7), '  baseline is'].join(' '));
    for (const r of rows) {
      console.log([r.name.padEnd(22), `${r.measured.toFixed(1)} ${r.unit}`.padStart(12), `${r.baseline.toFixed(1)} ${r.unit}`.padStart(12), (r.measured / r.baseline).toFixed(2).padStart(7), `  ${r.note}`].join(' '));
    }
  } finally {
    await s3.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
