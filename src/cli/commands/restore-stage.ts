import { once } from 'node:events';
import { findTarget } from '../../config/load.ts';
import { splitHostPort } from '../../native/settings.ts';
import { stageRestore } from '../../native/restore-stage.ts';
import { createS3ObjectStore } from '../../storage/s3.ts';
import { exitCodes, requiredString, stringOption, UsageError, type CliCommand } from '../command.ts';
import { reportBackupNotFound } from './list.ts';

export const command: CliCommand = {
  name: 'restore-stage',
  summary:
    "Serve a vcsa-native backup from S3, read-only over SFTP, for the vCenter installer's \"Restore\" stage on a freshly deployed appliance. " +
    'Downloads and checks every file, then prints the location to paste and a user and password valid for this session only; serves until SIGTERM or Ctrl-C, then deletes the staged files.',
  usage: '--target NAME [--backup ID|latest] [--listen HOST:PORT] [--advertise HOST[:PORT]] [--config fleet.yaml] [--json]',
  options: {
    target: { type: 'string', short: 't' },
    backup: { type: 'string', short: 'b' },
    listen: { type: 'string' },
    advertise: { type: 'string' },
  },
  async run(ctx) {
    const name = requiredString(ctx.values, 'target', 'name the appliance whose backup to serve, as in fleet.yaml targets[].name');
    const backup = stringOption(ctx.values, 'backup') ?? 'latest';
    const config = ctx.config();
    findTarget(config, name);
    const parse = (flag: string, text: string | undefined): { host: string; port?: number } | undefined => {
      if (text === undefined) return undefined;
      try {
        return splitHostPort(text);
      } catch {
        throw new UsageError(`--${flag}: expected host:port, got \`${text}\``);
      }
    };
    const listen = parse('listen', stringOption(ctx.values, 'listen'));
    const advertise = parse('advertise', stringOption(ctx.values, 'advertise'));
    const r = config.native.receiver;
    const listenHost = listen?.host ?? r.listenHost;
    const advertiseHost = advertise?.host ?? (listen && listen.host !== '0.0.0.0' ? listen.host : r.advertiseHost);
    if (advertiseHost === '0.0.0.0' || advertiseHost === '::') throw new UsageError('--advertise: required when listening on every address; give the host the new appliance can reach');
    const store = createS3ObjectStore(config.s3, ctx.logger);
    try {
      let staged;
      try {
        staged = await stageRestore({
          config,
          target: name,
          backup,
          store,
          logger: ctx.logger.child({ target: name }),
          listenHost,
          listenPort: listen?.port ?? r.listenPort,
          advertiseHost,
          ...(advertise?.port !== undefined ? { advertisePort: advertise.port } : r.advertisePort !== undefined && !advertise ? { advertisePort: r.advertisePort } : {}),
          signal: ctx.signal,
        });
      } catch (err) {
        const code = reportBackupNotFound(ctx, err);
        if (code !== null) return code;
        throw err;
      }
      const native = staged.entry.manifest.native;
      if (ctx.json) {
        ctx.out(JSON.stringify({ target: name, id: staged.entry.id, location: staged.location, user: staged.credentials.user, password: staged.credentials.password, hostKey: staged.hostKeyFingerprint, passwordProtected: native?.passwordProtected ?? false, files: staged.files }));
      } else {
        ctx.out(
          [
            `${name}: backup ${staged.entry.id} (vCenter ${native?.applianceVersion ?? '?'} build ${native?.applianceBuild ?? '?'}, parts ${native?.parts.join(', ') ?? '?'}) is served read-only.`,
            'In the installer\'s "Restore" stage (backup details), enter:',
            `  Location:  ${staged.location}`,
            `  User name: ${staged.credentials.user}`,
            `  Password:  ${staged.credentials.password}`,
            ...(native?.passwordProtected ? ['  Encryption password: the backup password of that appliance (native.backupPassword); it is not stored with the backup.'] : []),
            `  (server host key ${staged.hostKeyFingerprint}; these credentials end with this command)`,
            'Serving until SIGTERM or Ctrl-C.',
          ].join('\n'),
        );
      }
      if (!ctx.signal.aborted) await once(ctx.signal, 'abort');
      await staged.close();
      ctx.say('restore-stage: stopped; staged files deleted');
      return exitCodes.ok;
    } finally {
      store.close();
    }
  },
};
