import { bucketSetup } from '../../storage/bucket-setup.ts';
import { exitCodes, intOption, type CliCommand } from '../command.ts';

export const command: CliCommand = {
  name: 's3-setup',
  summary:
    'Print the bucket configuration vcsa-backup expects, as S3 API JSON to apply yourself: a lifecycle rule that aborts incomplete multipart uploads under the prefix ' +
    '(and, with s3.deletes: false, expiry of old versions), and the Object Lock default retention for ransomware-resistant backups, with guidance.',
  usage: '[--config fleet.yaml] [--abort-after-days 1] [--retain-days 30] [--json]',
  options: { 'abort-after-days': { type: 'string' }, 'retain-days': { type: 'string' } },
  run(ctx) {
    const config = ctx.config();
    const abortAfterDays = intOption(ctx.values, 'abort-after-days', 1);
    const retainDays = intOption(ctx.values, 'retain-days', 1);
    const setup = bucketSetup(config.s3, { ...(abortAfterDays !== undefined ? { abortAfterDays } : {}), ...(retainDays !== undefined ? { retainDays } : {}) });
    if (ctx.json) {
      ctx.out(JSON.stringify(setup, null, 2));
      return Promise.resolve(exitCodes.ok);
    }
    const b = config.s3.bucket;
    ctx.out(`# Lifecycle (aws s3api put-bucket-lifecycle-configuration --bucket ${b} --lifecycle-configuration file://lifecycle.json):`);
    ctx.out(JSON.stringify(setup.lifecycle, null, 2));
    ctx.out(`\n# Object Lock (aws s3api put-object-lock-configuration --bucket ${b} --object-lock-configuration file://object-lock.json):`);
    ctx.out(JSON.stringify(setup.objectLock, null, 2));
    ctx.out('');
    for (const n of setup.notes) ctx.out(`# ${n}`);
    return Promise.resolve(exitCodes.ok);
  },
};
