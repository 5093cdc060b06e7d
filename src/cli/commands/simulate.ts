import { untilAborted } from '../../abort.ts';
import { simulateNative } from './simulate-native.ts';
import { startSimFleet } from '../../sim/fleet.ts';
import { simProfiles, type SimProfile } from '../../sim/appliance.ts';
import { defaultPgUrl } from '../../sim/postgres.ts';
import { maxVcdbMb } from '../../sim/vcdb-data.ts';
import { intOption, requiredString, stringOption, UsageError, type CliCommand } from '../command.ts';

export const command: CliCommand = {
  name: 'simulate',
  summary:
    'Starts N simulated VCSA 5.5 (or, with --profile vcsa-6.x, 6.x/7.0; with --profile vcsa-native, 7.0/8.0 REST API) appliances (real PostgreSQL databases, services that keep writing) and an S3 endpoint, ' +
    'writes DIR/fleet.yaml for the workers, DIR/sim.json and DIR/audit.jsonl, and runs until SIGTERM or SIGINT, then removes everything it started.',
  usage: '--count N --out DIR [--profile vcsa-5.5|vcsa-6.x|vcsa-native] [--vcdb-mb M] [--s3-endpoint URL] [--pg-url postgres://user@host:port/db] [--redis-url URL] [--json]',
  options: {
    count: { type: 'string', short: 'n' },
    'vcdb-mb': { type: 'string' },
    out: { type: 'string', short: 'o' },
    profile: { type: 'string' },
    's3-endpoint': { type: 'string' },
    'pg-url': { type: 'string' },
    'redis-url': { type: 'string' },
  },
  async run(ctx) {
    const count = intOption(ctx.values, 'count', 1);
    if (count === undefined) throw new UsageError('--count: required; how many appliances to simulate, e.g. --count 3');
    if (count > 50) throw new UsageError(`--count: at most 50 appliances, got \`${count}\``);
    const vcdbMb = intOption(ctx.values, 'vcdb-mb', 0);
    if (vcdbMb !== undefined && vcdbMb > maxVcdbMb) throw new UsageError(`--vcdb-mb: at most ${maxVcdbMb} MiB per appliance, got \`${vcdbMb}\``);
    const outDir = requiredString(ctx.values, 'out', 'the directory for fleet.yaml, sim.json and the appliances, e.g. --out .sim');
    const profileName = stringOption(ctx.values, 'profile') ?? 'vcsa-5.5';
    if (profileName !== 'vcsa-native' && !(simProfiles as readonly string[]).includes(profileName)) {
      throw new UsageError(`--profile: one of ${[...simProfiles, 'vcsa-native'].join(', ')}, got \`${profileName}\``);
    }
    const profile = profileName as SimProfile;
    const s3Endpoint = stringOption(ctx.values, 's3-endpoint');
    if (s3Endpoint !== undefined && !/^https?:\/\/[^/\s]+/.test(s3Endpoint)) {
      throw new UsageError(`--s3-endpoint: expected an http(s) URL, got \`${s3Endpoint}\``);
    }
    const pgUrl = stringOption(ctx.values, 'pg-url') ?? defaultPgUrl;
    if (!/^postgres(ql)?:\/\//.test(pgUrl)) throw new UsageError(`--pg-url: expected postgres://user@host:port/database, got \`${pgUrl}\``);
    const redisUrl = stringOption(ctx.values, 'redis-url') ?? process.env['REDIS_URL'];

    if (ctx.signal.aborted) return 0;
    if (stringOption(ctx.values, 'profile') === 'vcsa-native') return simulateNative(ctx, count, outDir, s3Endpoint, redisUrl);
    ctx.say(`simulate: starting ${count} ${profile} appliance(s) in ${outDir}${vcdbMb ? `, filling each VCDB with about ${vcdbMb} MiB of vCenter-shaped data` : ''}`);
    const fleet = await startSimFleet({
      count,
      profile,
      outDir,
      pgUrl,
      ...(vcdbMb ? { vcdbMb } : {}),
      ...(s3Endpoint ? { s3Endpoint } : {}),
      ...(redisUrl ? { redisUrl } : {}),
    });
    try {
      ctx.logger.info({ appliances: fleet.appliances.map((a) => a.name), s3: fleet.sim.s3.endpoint }, 'simulated fleet is up');
      if (ctx.json) {
        ctx.out(
          JSON.stringify({
            config: fleet.configPath,
            sim: fleet.simJsonPath,
            audit: fleet.auditLog,
            s3: { endpoint: fleet.sim.s3.endpoint, bucket: fleet.sim.s3.bucket },
            appliances: fleet.appliances.map((a) => ({ name: a.name, root: a.root, vcdbUrl: a.vcdbUrl, ...('inventoryUrl' in a ? { inventoryUrl: a.inventoryUrl } : {}) })),
          }),
        );
      }
      ctx.say(
        [
          `simulate: ${fleet.appliances.length} appliance(s) running: ${fleet.appliances.map((a) => a.name).join(', ')}`,
          `  config:  ${fleet.configPath}`,
          `  sim:     ${fleet.simJsonPath}`,
          `  audit:   ${fleet.auditLog}`,
          `  s3:      ${fleet.sim.s3.endpoint} (bucket ${fleet.sim.s3.bucket})`,
          `simulate: running until SIGTERM or Ctrl-C, e.g. \`vcsa-backup worker --config ${fleet.configPath}\` in another terminal`,
        ].join('\n'),
      );
      await untilAborted(ctx.signal);
      ctx.say('simulate: stopping the appliances and removing their databases');
    } finally {
      await fleet.stop();
    }
    ctx.say('simulate: done');
    return 0;
  },
};
