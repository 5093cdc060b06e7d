/**
 * Child process of `npm run bench`: the worker's data path for one dump — dump into the spool
 * (local executor), compress on every core, upload and verify with the default settings — and
 * its peak RSS (VmHWM), printed as JSON on stdout. A process of its own, so that the peak is
 * the worker path's alone (the embedded S3 endpoint keeps objects in the parent's memory).
 */
import { mkdir, readFile } from 'node:fs/promises';
import { compressOnce } from '../src/backup/compress.ts';
import { dumpToSpool } from '../src/backup/dump.ts';
import { parseConfig } from '../src/config/load.ts';
import { LocalExecutor } from '../src/executors/local.ts';
import { silentLogger } from '../src/log.ts';
import { shellQuote } from '../src/profiles/render.ts';
import { createS3ObjectStore } from '../src/storage/s3.ts';
import type { EmbeddedS3 } from '../src/storage/embedded-s3.ts';

const [source, s3Json, spool] = process.argv.slice(2);
if (!source || !s3Json || !spool) throw new Error('usage: rss-probe.ts SOURCE S3_JSON SPOOL_DIR');
const s3 = JSON.parse(s3Json) as EmbeddedS3;
const mib = (kb: number): number => kb / 1024;
async function statusKb(field: string): Promise<number> {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(await readFile('/proc/self/status', 'utf8'));
  return Number(m?.[1] ?? NaN);
}

const config = parseConfig(
  {
    s3: { bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, checksums: 'when-required', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    spool: { dir: spool, minFreeMiB: 0 },
    targets: [{ name: 'rss', profile: 'postgres', executor: { type: 'local' } }],
  },
  { env: {} },
);
const store = createS3ObjectStore(config.s3, silentLogger);
const idleKb = await statusKb('VmRSS');
await mkdir(spool, { recursive: true });
const artifact = await dumpToSpool(new LocalExecutor({}, silentLogger), { name: 'vcdb', file: 'postgres.sql', format: 'plain-sql', dump: `cat ${shellQuote(source)}`, restore: '' }, spool, { timeoutMs: 3_600_000 });
const gz = await compressOnce(`${spool}/${artifact.file}`, config.compression);
await store.putFile(`rss/${process.pid}.gz`, gz.path, { expectedSha256: gz.sha256 });
store.close();
process.stdout.write(JSON.stringify({ peakMiB: mib(await statusKb('VmHWM')), idleMiB: mib(idleKb), rawBytes: artifact.rawBytes, gzBytes: gz.bytes }));
