import { once } from 'node:events';
import { startNativeSimFleet } from '../../sim/native-fleet.ts';
import type { CliContext } from '../command.ts';

/** `simulate --profile vcsa-native`: simulated vCenter 8.0 appliances (REST API + SFTP push) in this process. */
export async function simulateNative(ctx: CliContext, count: number, outDir: string, s3Endpoint: string | undefined, redisUrl: string | undefined): Promise<number> {
  ctx.say(`simulate: starting ${count} vCenter 8.0 appliance(s) (vcsa-native) in ${outDir}`);
  const fleet = await startNativeSimFleet({ count, outDir, ...(s3Endpoint ? { s3Endpoint } : {}), ...(redisUrl ? { redisUrl } : {}) });
  try {
    if (ctx.json) {
      ctx.out(JSON.stringify({ config: fleet.configPath, sim: fleet.simJsonPath, s3: fleet.s3, appliances: fleet.appliances.map((a) => ({ name: a.name, apiUrl: a.url, version: a.version })) }));
    }
    ctx.say(
      [
        `simulate: ${fleet.appliances.length} appliance(s) running: ${fleet.appliances.map((a) => `${a.name} ${a.url}`).join(', ')}`,
        `  config:  ${fleet.configPath}`,
        `  sim:     ${fleet.simJsonPath}`,
        `  s3:      ${fleet.s3.endpoint} (bucket ${fleet.s3.bucket})`,
        `simulate: running until SIGTERM or Ctrl-C, e.g. \`vcsa-backup worker --config ${fleet.configPath}\` in another terminal`,
      ].join('\n'),
    );
    if (!ctx.signal.aborted) await once(ctx.signal, 'abort');
  } finally {
    await fleet.stop();
  }
  ctx.say('simulate: done');
  return 0;
}
