/**
 * The `vcsa-backup` CLI of a fleet harness, run inside the test process (runCliInProcess) instead
 * of as a child: the same `main`, without a tsx start-up per command (seconds each on a loaded
 * 2-core CI machine). Only for calls the test awaits before doing anything else: the process
 * environment is replaced for the duration of the call, so nothing else in the test may run
 * (spawn a worker, build a client) meanwhile. The CLI's own logs go to this process's stderr,
 * uncaptured: where a test asserts on them, use the harness's `cli` (a child process).
 */
import type { CliResult, FleetHarness } from './fleet.ts';
import { runCliInProcess } from './cli-in-process.ts';

export function fleetCliInProcess(h: FleetHarness, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runCliInProcess([...args, '--config', h.configPath], { REDIS_URL: '', LOG_LEVEL: 'warn', ...env });
}
