import { connectRedis } from '../../redis/connection.ts';
import { describeEncryption, rekeyTarget, type RekeyResult } from '../../backup/rekey.ts';
import { findTarget } from '../../config/load.ts';
import { createS3ObjectStore } from '../../storage/s3.ts';
import { exitCodes, requiredString, stringOption, type CliCommand } from '../command.ts';
import { formatBytes } from '../../format.ts';
import { reportBackupNotFound } from './list.ts';

function human(r: RekeyResult): string {
  const count = (action: string): number => r.backups.filter((b) => b.action === action).length;
  const summary = r.dryRun
    ? `${count('would-rekey')} would be re-encrypted, ${count('current')} already current`
    : `${count('rekeyed')} re-encrypted, ${count('current')} already current${count('failed') > 0 ? `, ${count('failed')} FAILED` : ''}`;
  const lines = [`${r.target}: ${r.backups.length} backup(s): ${summary}${r.dryRun ? ' (dry run)' : ''}. New backups: ${describeEncryption(r.to)}`];
  for (const b of r.backups) {
    lines.push(`  ${b.id}  ${b.action}: ${b.reason}`);
    for (const a of b.artifacts) lines.push(`    ${a.name}: ${a.from} → ${a.to} (${formatBytes(a.bytes)}, checked: ${a.checked})`);
    if (b.removed.length > 0) lines.push(`    ${r.dryRun ? 'would remove' : 'removed'} ${b.removed.length} object(s): ${b.removed.join(', ')}`);
  }
  return lines.join('\n');
}

export const command: CliCommand = {
  name: 'rekey',
  summary:
    'Re-encrypt stored backups to the current encryption settings (encryption.recipients, or encryption.passphrase): after adding or removing ' +
    'a recipient, changing the passphrase, or to convert backups of the old aes-256-gcm-stream-v1 format (or unencrypted ones) to age. Each ' +
    'backup is downloaded, decrypted with encryption.identities / passphrases, checked against its manifest, encrypted again, uploaded under ' +
    'new keys and verified; then its manifest is switched and the old objects removed. Takes the target lock one backup at a time. ' +
    'Without --backup: every backup of the target.',
  usage: '--target NAME [--backup ID|latest|all] [--dry-run] [--config fleet.yaml] [--json]',
  options: {
    target: { type: 'string', short: 't' },
    backup: { type: 'string', short: 'b' },
    'dry-run': { type: 'boolean', default: false },
  },
  async run(ctx) {
    const name = requiredString(ctx.values, 'target', 'name the appliance whose backups to re-encrypt, as in fleet.yaml targets[].name');
    const backup = stringOption(ctx.values, 'backup') ?? 'all';
    const dryRun = ctx.values['dry-run'] === true;
    const config = ctx.config();
    findTarget(config, name);
    const logger = ctx.logger.child({ target: name });
    const store = createS3ObjectStore(config.s3, logger);
    const redis = dryRun ? undefined : connectRedis(config.redis, 'command');
    redis?.on('error', (err) => logger.debug({ err }, 'redis connection error'));
    try {
      let result: RekeyResult;
      try {
        result = await rekeyTarget({
          config,
          target: name,
          backup,
          store,
          ...(redis ? { redis } : {}),
          logger,
          dryRun,
          signal: ctx.signal,
          onProgress: (e) => {
            if (!ctx.json) ctx.say(`${name} ${e.id}: ${e.step}${e.artifact ? ` ${e.artifact}` : ''}`);
          },
        });
      } catch (err) {
        const code = reportBackupNotFound(ctx, err);
        if (code !== null) return code;
        throw err;
      }
      ctx.out(ctx.json ? JSON.stringify(result) : human(result));
      return result.backups.some((b) => b.action === 'failed') ? exitCodes.failed : exitCodes.ok;
    } finally {
      redis?.disconnect();
      store.close();
    }
  },
};
