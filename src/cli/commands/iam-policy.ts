import { iamPolicy } from '../../storage/iam-policy.ts';
import { exitCodes, type CliCommand } from '../command.ts';

export const command: CliCommand = {
  name: 'iam-policy',
  summary: 'Print the least-privilege AWS IAM policy for the configured bucket and prefix (objects under the prefix, listing under it, aborting multipart uploads).',
  usage: '[--config fleet.yaml]',
  options: {},
  run(ctx) {
    const config = ctx.config();
    ctx.out(JSON.stringify(iamPolicy(config.s3), null, 2));
    return Promise.resolve(exitCodes.ok);
  },
};
