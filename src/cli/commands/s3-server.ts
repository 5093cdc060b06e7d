import { untilAborted } from '../../abort.ts';
import { startEmbeddedS3 } from '../../storage/embedded-s3.ts';
import { intOption, stringOption, UsageError, type CliCommand } from '../command.ts';

/**
 * The embedded S3 endpoint (the one `demo` and `simulate` use) as a server of its own: a stand-in
 * for MinIO where no S3 server image can be had (docker-compose.local.yml). In memory, no
 * authentication: for demos and tests only.
 */
export const command: CliCommand = {
  name: 's3-server',
  summary:
    'Runs the embedded S3-compatible endpoint (in memory, no authentication, path-style; everything is lost when it stops) until SIGTERM or SIGINT. ' +
    'For demos and tests only, e.g. the local compose stack: never for real backups.',
  usage: '[--host 127.0.0.1] [--port 9000] [--bucket vcsa-backups] [--json]',
  options: {
    host: { type: 'string' },
    port: { type: 'string' },
    bucket: { type: 'string' },
  },
  async run(ctx) {
    const host = stringOption(ctx.values, 'host') ?? '127.0.0.1';
    if (host === '') throw new UsageError('--host: expected an address to listen on, e.g. 127.0.0.1');
    const port = intOption(ctx.values, 'port', 0) ?? 9000;
    if (port > 65535) throw new UsageError(`--port: expected a TCP port up to 65535, got \`${port}\``);
    const bucket = stringOption(ctx.values, 'bucket') ?? 'vcsa-backups';
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new UsageError(`--bucket: expected an S3 bucket name (3-63 of a-z, 0-9, '.', '-'), got \`${bucket}\``);
    if (ctx.signal.aborted) return 0;
    const s3 = await startEmbeddedS3({ host, port, bucket });
    try {
      ctx.logger.info({ endpoint: s3.endpoint, bucket: s3.bucket }, 'embedded S3 endpoint is up (in memory, no authentication)');
      if (ctx.json) ctx.out(JSON.stringify({ endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region }));
      await untilAborted(ctx.signal);
    } finally {
      await s3.stop();
    }
    return 0;
  },
};
