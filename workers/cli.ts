import { main as domainMain, type CliIo, type CommandRegistry } from '../src/cli/main.ts';

/** The queue-facing commands; the rest are in src/cli/main.ts. */
const queueCommands: CommandRegistry = {
  worker: () => import('./commands/worker.ts'),
  schedule: () => import('./commands/schedule.ts'),
  run: () => import('./commands/run.ts'),
  status: () => import('./commands/status.ts'),
  lease: () => import('./commands/lease.ts'),
  demo: () => import('./commands/demo.ts'),
  dashboard: () => import('./commands/dashboard.ts'),
};

export function main(argv: readonly string[], io?: CliIo): Promise<number> {
  return domainMain(argv, queueCommands, io);
}
