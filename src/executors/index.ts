import { BackupError } from '../errors.ts';
import type { ExecutorSettings } from '../config/load.ts';
import type { Logger } from '../log.ts';
import { DockerExecutor } from './docker.ts';
import type { Executor } from './executor.ts';
import { LocalExecutor } from './local.ts';
import { SshExecutor } from './ssh.ts';

/** Builds the executor a target's config asks for. */
export function createExecutor(settings: ExecutorSettings, logger: Logger): Executor {
  switch (settings.type) {
    case 'local':
      return new LocalExecutor(settings, logger);
    case 'ssh':
      return new SshExecutor(settings, logger);
    case 'docker':
      return new DockerExecutor(settings, logger);
    case 'vcsa-api':
      // The appliance's REST API runs no shell commands: its jobs go through src/native/.
      throw new BackupError(
        'NATIVE_NO_SHELL',
        `${settings.url} is a vcsa-native target: it has no shell executor. Back it up with \`backup\`/\`run\` (the appliance's own file-based backup) and restore it with \`restore-stage\``,
        { permanent: true },
      );
  }
}
