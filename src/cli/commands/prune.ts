import { findTarget } from '../../config/load.ts';
import { errorCode, errorMessage } from '../../errors.ts';
import { policyFromConfig } from '../../retention/policy.ts';
import { pruneTarget, type PruneResult } from '../../retention/prune.ts';
import { createS3ObjectStore } from '../../storage/s3.ts';
import { exitCodes, stringList, type CliCommand } from '../command.ts';
import { formatBytes } from '../../format.ts';

function human(r: PruneResult): string {
  const verb = r.dryRun ? 'would delete' : 'deleted';
  const lines = [`${r.target}: kept ${r.kept.length}, ${verb} ${r.deleted.length}${r.dryRun ? ' (dry run)' : ''}`];
  if (r.skipped) lines.push(`  pruning skipped: ${r.skipped}`);
  for (const d of r.deleted) lines.push(`  ${verb} ${d.id} (${formatBytes(d.bytes)}): ${d.reason}`);
  for (const k of r.kept) lines.push(`  kept ${k.id} (${formatBytes(k.bytes)}): ${k.reason}`);
  for (const id of r.future) lines.push(`  warning: ${id} is timestamped in the future; kept. Check the clock of the host that made it.`);
  for (const o of r.orphans) lines.push(`  ${r.dryRun ? 'would remove' : 'removed'} debris ${o.id} (${o.keys} object(s) without a manifest, last written ${o.lastModified})`);
  for (const d of r.damaged) lines.push(`  warning: ${d.key} is unreadable; left alone: ${d.reason}`);
  if (r.abortedUploads > 0) lines.push(`  aborted ${r.abortedUploads} incomplete multipart upload(s)`);
  return lines.join('\n');
}

export const command: CliCommand = {
  name: 'prune',
  summary:
    'Apply the retention policy (retention.keepLast, maxAgeDays, keepDaily/Weekly/Monthly) to the backups in S3. Never deletes the newest backup, ' +
    'refuses a policy that would delete them all, and skips pruning when the newest backup is much smaller than the one before (retention.minSizeRatio). ' +
    'Also removes debris of crashed uploads older than a day. Without --target: every target in the config.',
  usage: '[--target NAME]... [--dry-run] [--config fleet.yaml] [--json]',
  options: {
    target: { type: 'string', short: 't', multiple: true },
    'dry-run': { type: 'boolean', default: false },
  },
  async run(ctx) {
    const config = ctx.config();
    const names = stringList(ctx.values, 'target');
    const targets = names.length > 0 ? names.map((n) => findTarget(config, n).name) : config.targets.map((t) => t.name);
    // s3.deletes: false (Object Lock, credentials without delete right): report, never delete;
    // the bucket's lifecycle and retention expire backups.
    const deletesRefused = !config.s3.deletes;
    const dryRun = ctx.values['dry-run'] === true || deletesRefused;
    if (deletesRefused) ctx.say('prune: s3.deletes is false (the credentials have no delete right; the bucket\'s Object Lock retention and lifecycle expire backups): reporting what retention would delete, deleting nothing');
    const policy = policyFromConfig(config.retention);
    const store = createS3ObjectStore(config.s3, ctx.logger);
    const results: PruneResult[] = [];
    const failures: { target: string; code: string; message: string }[] = [];
    try {
      for (const target of targets) {
        ctx.signal.throwIfAborted();
        try {
          const result = await pruneTarget({ store, prefix: config.s3.prefix, target, policy, logger: ctx.logger, dryRun });
          results.push(result);
          if (!ctx.json) ctx.out(human(result));
        } catch (err) {
          failures.push({ target, code: errorCode(err), message: errorMessage(err) });
          const refused = /AccessDenied|access denied|forbidden/i.test(`${errorCode(err)} ${errorMessage(err)}`);
          const hint = refused ? ' (delete refused: if the bucket uses Object Lock and the credentials have no delete right, set s3.deletes: false and let its lifecycle expire backups)' : '';
          ctx.say(`${target}: prune failed (${errorCode(err)}): ${errorMessage(err)}${hint}`);
        }
      }
    } finally {
      store.close();
    }
    if (ctx.json) ctx.out(JSON.stringify({ dryRun, targets: results, failures }));
    return failures.length > 0 ? exitCodes.failed : exitCodes.ok;
  },
};
