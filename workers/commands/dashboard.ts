import { untilAborted } from '../../src/abort.ts';
import { exitCodes, intOption, stringList, stringOption, type CliCommand } from '../../src/cli/command.ts';
import { startDashboard } from '../dashboard.ts';

export const command: CliCommand = {
  name: 'dashboard',
  summary:
    'Serve the fleet page (last good backup and its age, size, downtime, step now, last failure, next run, last verify, fleet lease), ' +
    'bull-board under /queues, Prometheus metrics at /metrics and /healthz. Binds 127.0.0.1 unless --host says otherwise; ' +
    'dashboard.token or dashboard.basicAuth in the config protect everything but /healthz.',
  usage: '[--config fleet.yaml] [--host 127.0.0.1] [--port 8080] [--public-name NAME…] [--insecure-no-auth]',
  needs: ['dashboard'],
  options: { host: { type: 'string' }, port: { type: 'string' }, 'insecure-no-auth': { type: 'boolean', default: false }, 'public-name': { type: 'string', multiple: true } },
  async run(ctx) {
    const config = ctx.config();
    const host = stringOption(ctx.values, 'host') ?? '127.0.0.1';
    const port = intOption(ctx.values, 'port', 0, 65535) ?? 8080;
    const dashboard = await startDashboard({ config, logger: ctx.logger, host, port, insecureNoAuth: ctx.values['insecure-no-auth'] === true, publicNames: stringList(ctx.values, 'public-name') });
    ctx.say(`dashboard: ${dashboard.url} (queues at ${dashboard.url}queues/, metrics at ${dashboard.url}metrics)`);
    if (ctx.json) ctx.out(JSON.stringify({ url: dashboard.url }));
    await untilAborted(ctx.signal);
    await dashboard.close();
    return exitCodes.ok;
  },
};
