import { untilAborted } from '../../src/abort.ts';
import { exitCodes, type CliCommand } from '../../src/cli/command.ts';
import { createExecutor } from '../../src/executors/index.ts';
import { createS3ObjectStore } from '../../src/storage/s3.ts';
import { afterBackupTasks } from '../after-backup.ts';
import { startWorker } from '../worker.ts';

export const command: CliCommand = {
  name: 'worker',
  summary:
    'Run a worker: take backup jobs from the queue (stop → dump → start → gzip → upload → verify → manifest), run the scheduler triggers and the watchdog. ' +
    'Stops gracefully on SIGTERM/SIGINT: a dump in flight is cancelled, the appliance\'s services are started and the lease released before exit.',
  usage: '[--config fleet.yaml]',
  needs: ['notify'],
  options: {},
  async run(ctx) {
    const config = ctx.config();
    const store = createS3ObjectStore(config.s3, ctx.logger);
    const worker = startWorker({
      config,
      logger: ctx.logger,
      store,
      makeExecutor: (target) => createExecutor(target.executor, ctx.logger.child({ target: target.name })),
      afterBackup: afterBackupTasks(config, store),
    });
    await untilAborted(ctx.signal);
    await worker.close();
    store.close();
    return exitCodes.ok;
  },
};
