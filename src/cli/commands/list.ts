import { targetPrefix, type ArtifactEncryption } from '../../backup/manifest.ts';
import { catalogJson, listBackups } from '../../catalog/catalog.ts';
import { findTarget } from '../../config/load.ts';
import { errorCode, errorMessage } from '../../errors.ts';
import { createS3ObjectStore } from '../../storage/s3.ts';
import { exitCodes, requiredString, type CliCommand, type CliContext } from '../command.ts';
import { formatBytes, formatDuration } from '../progress.ts';

/**
 * A backup id that does not exist is bad input (exit 2), reported with its own code so that
 * scripts can tell it from a failed job. Returns null for any other error.
 */
export function reportBackupNotFound(ctx: CliContext, err: unknown): number | null {
  if (errorCode(err) !== 'BACKUP_NOT_FOUND') return null;
  if (ctx.json) ctx.out(JSON.stringify({ error: { code: 'BACKUP_NOT_FOUND', message: errorMessage(err) } }));
  ctx.say(`vcsa-backup: ${errorMessage(err)}`);
  return exitCodes.badInput;
}

/** "none", "age (2 recipients)", "age (passphrase)" or the old format's name. */
function encryptionColumn(enc: ArtifactEncryption | null | undefined): string {
  if (!enc) return 'none';
  if (enc.algorithm !== 'age') return enc.algorithm;
  return enc.passphrase ? 'age (passphrase)' : `age (${enc.recipients.length} recipient${enc.recipients.length === 1 ? '' : 's'})`;
}

/** Columns padded to their widest cell. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

export const command: CliCommand = {
  name: 'list',
  summary: 'List the complete backups of one appliance (those with a manifest), newest first: id, time, sizes, checksums, profile, encryption.',
  usage: '--target NAME [--config fleet.yaml] [--json]',
  options: { target: { type: 'string', short: 't' } },
  async run(ctx) {
    const name = requiredString(ctx.values, 'target', 'name the appliance, as in fleet.yaml targets[].name');
    const config = ctx.config();
    findTarget(config, name);
    const store = createS3ObjectStore(config.s3, ctx.logger);
    try {
      const damaged: { key: string; code: string; reason: string }[] = [];
      const entries = await listBackups(store, config.s3.prefix, name, { logger: ctx.logger, onDamaged: (key, reason, code) => damaged.push({ key, code, reason }) });
      if (ctx.json) {
        ctx.out(JSON.stringify({ target: name, bucket: config.s3.bucket, backups: entries.map(catalogJson), damaged }));
        return exitCodes.ok;
      }
      const where = `s3://${config.s3.bucket}/${targetPrefix(config.s3.prefix, name)}`;
      if (entries.length === 0) {
        ctx.out(`${name}: no complete backups in ${where}`);
      } else {
        ctx.out(`${name}: ${entries.length} complete backup(s) in ${where}, newest first`);
        const now = Date.now();
        const rows: string[][] = [['ID', 'TAKEN (UTC)', 'AGE', 'SIZE', 'DOWNTIME', 'PROFILE', 'ENCRYPTION', 'ARTIFACTS']];
        for (const e of entries) {
          const m = e.manifest;
          const enc = [...new Set(m.artifacts.map((a) => encryptionColumn(a.encryption)))].join(',');
          rows.push([
            e.id,
            e.at.toISOString().replace('T', ' ').slice(0, 19),
            formatDuration(Math.max(0, now - e.at.getTime())),
            formatBytes(e.bytes),
            m.quiesce ? formatDuration(m.quiesce.ms) : 'not quiesced',
            m.profile,
            enc,
            m.artifacts.map((a) => `${a.name} ${formatBytes(a.bytes)} sha256:${a.sha256.slice(0, 12)}`).join(', '),
          ]);
        }
        ctx.out(table(rows));
      }
      for (const d of damaged) ctx.say(`warning (${d.code}): ${d.key} is not listed: ${d.reason}`);
      return exitCodes.ok;
    } finally {
      store.close();
    }
  },
};
