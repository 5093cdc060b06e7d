/**
 * `npm run bench:snapshot`: the services-down window of quiesce.mode snapshot against classic,
 * on one simulated VCSA 6.x whose VCDB is grown to BENCH_VCDB_MB (default 256) MiB of
 * vCenter-shaped data, each mode backed up BENCH_ROUNDS times (default 3) in the same run, to the
 * embedded S3 endpoint. Prints the median window (stop → services confirmed running) and dump
 * time per mode and the ratio. Not a test: nothing here asserts a time.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBackup } from '../src/backup/run-backup.ts';
import { parseConfig } from '../src/config/load.ts';
import { createExecutor } from '../src/executors/index.ts';
import { silentLogger } from '../src/log.ts';
import { createSimVcsa6Appliance } from '../src/sim/appliance.ts';
import { startEmbeddedS3 } from '../src/storage/embedded-s3.ts';
import { createS3ObjectStore } from '../src/storage/s3.ts';
import { Secret } from '../src/config/secret.ts';

const vcdbMb = Number(process.env['BENCH_VCDB_MB'] ?? 256);
const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};

const dir = await mkdtemp(join(tmpdir(), 'bench-snapshot-'));
const s3 = await startEmbeddedS3({ bucket: 'bench-snapshot' });
const store = createS3ObjectStore(
  {
    bucket: s3.bucket,
    prefix: 'bench',
    region: s3.region,
    endpoint: s3.endpoint,
    forcePathStyle: true,
    accessKeyId: new Secret(s3.accessKeyId, 'bench'),
    secretAccessKey: new Secret(s3.secretAccessKey, 'bench'),
    checksums: 'when-required',
    partSizeMiB: 8,
    queueSize: 2,
    verify: 'head',
    createBucket: false,
    deletes: true,
  },
  silentLogger,
);
process.stderr.write(`bench:snapshot: a simulated VCSA 6.x with a ~${vcdbMb} MiB VCDB, ${rounds} backups per mode\n`);
const sim = await createSimVcsa6Appliance({ name: 'bench6', baseDir: join(dir, 'appliances'), auditLog: join(dir, 'audit.jsonl'), vcdbMb });
try {
  const results: Record<'snapshot' | 'classic', { window: number[]; dump: number[]; bytes: number }> = {
    snapshot: { window: [], dump: [], bytes: 0 },
    classic: { window: [], dump: [], bytes: 0 },
  };
  for (let round = 0; round < rounds; round++) {
    // Alternate the order, so that neither mode always runs on a warmer cache.
    for (const mode of round % 2 ? (['classic', 'snapshot'] as const) : (['snapshot', 'classic'] as const)) {
      const config = parseConfig(
        {
          s3: { bucket: s3.bucket, prefix: 'bench', endpoint: s3.endpoint, forcePathStyle: true, checksums: 'when-required', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
          spool: { dir: join(dir, 'spool'), minFreeMiB: 0 },
          retention: { afterBackup: false },
          quiesce: { mode },
          targets: [{ name: 'bench6', profile: 'vcsa-6.x', executor: { type: 'local' }, variables: { ...sim.variables } }],
        },
        { env: {} },
      );
      const target = config.targets[0]!;
      const executor = createExecutor(target.executor, silentLogger);
      const outcome = await runBackup({ config, target, executor, store, logger: silentLogger }).finally(() => executor.close());
      const m = outcome.manifest;
      if (m.quiesce?.mode !== mode) throw new Error(`asked for ${mode}, got ${m.quiesce?.mode ?? 'none'} (${m.quiesce?.reason ?? ''})`);
      results[mode].window.push(m.quiesce.ms);
      results[mode].dump.push(m.timings['dumpMs'] ?? 0);
      results[mode].bytes = m.artifacts.reduce((sum, a) => sum + a.rawBytes, 0);
      process.stderr.write(`  ${mode}: window ${m.quiesce.ms} ms, dump ${m.timings['dumpMs'] ?? 0} ms\n`);
    }
  }
  const snap = median(results.snapshot.window);
  const classic = median(results.classic.window);
  const rows = [
    ['dump size (MiB)', (results.classic.bytes / 2 ** 20).toFixed(1), (results.snapshot.bytes / 2 ** 20).toFixed(1)],
    ['window, median (ms)', String(classic), String(snap)],
    ['dump, median (ms)', String(median(results.classic.dump)), String(median(results.snapshot.dump))],
  ];
  process.stdout.write(
    [
      `| VCSA 6.x, VCDB ~${vcdbMb} MiB, ${rounds} rounds | classic | snapshot |`,
      '|---|---|---|',
      ...rows.map((r) => `| ${r.join(' | ')} |`),
      '',
      `snapshot window / classic window: ${(snap / classic).toFixed(3)} (the snapshot window is stop + export + start; the classic one holds the dump)`,
      '',
    ].join('\n'),
  );
} finally {
  store.close();
  await sim.destroy();
  await s3.stop();
  await rm(dir, { recursive: true, force: true });
}
