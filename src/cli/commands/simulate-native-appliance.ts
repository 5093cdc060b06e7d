import { hostname } from 'node:os';
import { untilAborted } from '../../abort.ts';
import { splitHostPort } from '../../native/settings.ts';
import { startNativeAppliance, type NativeFault } from '../../sim/native-appliance.ts';
import { intOption, stringOption, UsageError, type CliCommand } from '../command.ts';

const faultKinds = ['none', 'wrong-location-credentials', 'unreachable-location', 'stuck', 'session-expiry', 'transfer-cut'] as const;

/** `--fault KIND` (or `unavailable:N`, N requests answered 503) → the simulator's fault. */
function parseFault(text: string | undefined): NativeFault {
  if (text === undefined) return { kind: 'none' };
  const unavailable = /^unavailable:(\d{1,6})$/.exec(text);
  if (unavailable) return { kind: 'unavailable', count: Number(unavailable[1]) };
  if ((faultKinds as readonly string[]).includes(text)) return { kind: text as (typeof faultKinds)[number] };
  throw new UsageError(`--fault: one of ${[...faultKinds, 'unavailable:N'].join(', ')}, got \`${text}\``);
}

/**
 * One simulated vCenter 7.0/8.0 (or 6.7) appliance, alone in this process: what the container
 * image runs (`docker run … vcsa-backup simulate-native-appliance`). The in-process fleet of
 * `simulate --profile vcsa-native` is the same simulator (src/sim/native-appliance.ts).
 */
export const command: CliCommand = {
  name: 'simulate-native-appliance',
  summary:
    'Runs one simulated vCenter 7.0/8.0 appliance (its REST API over HTTPS with a fresh self-signed certificate; a started backup job pushes its files ' +
    'to the given SFTP location) until SIGTERM or SIGINT. The API password is $VCSA_SIM_API_PASSWORD, else a random one printed at start. ' +
    'Prints what a fleet.yaml target needs (URL, user, certificate fingerprint); with --json as one JSON line on stdout.',
  usage: '[--name NAME] [--listen HOST:PORT] [--version 8.0.2.00100|7.0.3.01000|6.7.0.51000] [--archive-kib N] [--fault KIND] [--json]',
  options: {
    name: { type: 'string' },
    listen: { type: 'string' },
    version: { type: 'string' },
    'archive-kib': { type: 'string' },
    fault: { type: 'string' },
  },
  async run(ctx) {
    const name = stringOption(ctx.values, 'name') ?? 'vcn01';
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/i.test(name)) throw new UsageError(`--name: letters, digits and '-', got \`${name}\``);
    const listen = stringOption(ctx.values, 'listen') ?? '0.0.0.0:8443';
    let host: string;
    let port: number;
    try {
      const parsed = splitHostPort(listen);
      host = parsed.host;
      port = parsed.port ?? 8443;
    } catch {
      throw new UsageError(`--listen: expected HOST:PORT (port 0: any free port), got \`${listen}\``);
    }
    if (port > 65535) throw new UsageError(`--listen: a port from 0 to 65535, got \`${port}\``);
    const version = stringOption(ctx.values, 'version') ?? '8.0.2.00100';
    if (!/^(6\.7|7\.0|8\.0)\.\d+\.\d+$/.test(version)) throw new UsageError(`--version: a vCenter 6.7, 7.0 or 8.0 version such as 8.0.2.00100, got \`${version}\``);
    // At most 1 GiB per archive file (the database one is 4× that).
    const archiveKib = intOption(ctx.values, 'archive-kib', 1, 1024 * 1024);
    const fault = parseFault(stringOption(ctx.values, 'fault'));
    const given = process.env['VCSA_SIM_API_PASSWORD'];

    const appliance = await startNativeAppliance({
      name,
      version,
      host,
      port,
      ...(given ? { password: given } : {}),
      ...(archiveKib !== undefined ? { archiveBytes: archiveKib * 1024 } : {}),
    });
    appliance.setFault(fault);
    try {
      // The URL the appliance is reached at: a wildcard bind is reached by this host's name.
      const url = host === '0.0.0.0' || host === '::' ? appliance.url.replace(/^https:\/\/[^/]+:/, `https://${hostname()}:`) : appliance.url;
      const ready = {
        name,
        url,
        user: appliance.user,
        version: appliance.version,
        build: appliance.build,
        tlsFingerprint: appliance.tls.fingerprint,
        fault: fault.kind,
        // Only a password this process made up is printed: a given one is already known.
        ...(given ? {} : { password: appliance.password }),
      };
      ctx.logger.info({ name, url, version: appliance.version, fault: fault.kind }, 'simulated native appliance is up');
      if (ctx.json) ctx.out(JSON.stringify(ready));
      else {
        ctx.out(
          [
            `${name}: simulated vCenter ${appliance.version} (build ${appliance.build}) at ${url}`,
            `  user:        ${appliance.user}`,
            `  password:    ${given ? '$VCSA_SIM_API_PASSWORD' : appliance.password}`,
            `  fingerprint: ${appliance.tls.fingerprint}`,
            `  fleet.yaml:  { name: ${name}, profile: vcsa-native, api: { url: ${url}, user: ${appliance.user}, password: { env: … }, tls: { fingerprint: "${appliance.tls.fingerprint}" } } }`,
          ].join('\n'),
        );
      }
      await untilAborted(ctx.signal);
      ctx.say(`${name}: stopping (running jobs are cancelled)`);
    } finally {
      await appliance.stop();
    }
    return 0;
  },
};
