import type { Executor } from '../../src/executors/executor.ts';

/**
 * Wraps an executor so that `capture` runs once, just before the first service start command
 * goes to the appliance (`… vmware-… start`): for a restore, the moment its databases are
 * restored and nothing that writes to them runs yet. Reading the appliance then cannot race the
 * simulator's tick, as reading it after the services are back would.
 */
export function captureBeforeFirstStart<T>(executor: Executor, capture: () => Promise<T>): { executor: Executor; captured: () => T | undefined } {
  let value: T | undefined;
  let taken = false;
  const wrapped: Executor = {
    kind: executor.kind,
    description: executor.description,
    run: async (command, options) => {
      if (!taken && /\bvmware-[\w-]+ start\b/.test(command)) {
        taken = true;
        value = await capture();
      }
      return executor.run(command, options);
    },
    close: () => executor.close(),
  };
  return { executor: wrapped, captured: () => value };
}
