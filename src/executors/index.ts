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
  }
}
