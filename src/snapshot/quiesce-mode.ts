import type { Config, TargetConfig } from '../config/load.ts';
import type { Executor } from '../executors/executor.ts';
import type { Logger } from '../log.ts';
import { parsePgDumpVersion, supportsSnapshot } from './pg-dump-version.ts';

/**
 * How a backup keeps its dumps consistent:
 * - snapshot: services down for stop → export a snapshot of each database → start; the dumps
 *   then read those snapshots while vCenter runs (the window does not grow with the database);
 * - classic: services down for the whole dump.
 */
export type QuiesceMode =
  | { readonly mode: 'snapshot'; readonly pgDump: string }
  | { readonly mode: 'classic'; readonly reason: string; readonly requested: 'snapshot' | 'classic' };

/**
 * Decides before anything is stopped. quiesce.mode snapshot (the default) becomes classic, with
 * the reason, when the profile has no snapshot mode, when the services must stay down until the
 * upload anyway, or when the appliance's own pg_dump is older than 9.5 (or says nothing usable):
 * the version is asked on the appliance each time, because an upgrade changes it.
 */
export async function chooseQuiesceMode(input: {
  readonly config: Config;
  readonly target: TargetConfig;
  readonly executor: Executor;
  readonly logger: Logger;
  readonly signal?: AbortSignal | undefined;
}): Promise<QuiesceMode> {
  const { config, target, executor, logger, signal } = input;
  const profile = target.boundProfile;
  const classic = (reason: string): QuiesceMode => ({ mode: 'classic', reason, requested: config.quiesce.mode });
  if (config.quiesce.mode === 'classic') return classic('quiesce.mode is classic');
  if (!profile.snapshot || !profile.dumps.some((d) => d.snapshot)) {
    return classic(`profile ${profile.name} has no snapshot mode (its pg_dump cannot take --snapshot)`);
  }
  if (config.quiesce.startServicesAfter === 'upload') {
    return classic('quiesce.startServicesAfter is upload: the services stay stopped until the upload, so the dumps run while they are down');
  }
  const res = await executor.run(profile.snapshot.pgDumpVersion, {
    check: false,
    timeoutMs: target.timeouts.serviceSeconds * 1000,
    ...(signal ? { signal } : {}),
  });
  const firstLine = res.stdout.split('\n')[0]?.trim() ?? '';
  if (res.exitCode !== 0) {
    const why = (res.stderrTail.trim().split('\n').pop() ?? '').slice(0, 200);
    return classic(`\`pg_dump --version\` on the appliance exited ${res.exitCode}${why ? `: ${why}` : ''}`);
  }
  const version = parsePgDumpVersion(res.stdout);
  if (!version) return classic(`cannot read a version in the appliance's \`pg_dump --version\`: ${JSON.stringify(firstLine.slice(0, 120))}`);
  if (!supportsSnapshot(version)) return classic(`the appliance's pg_dump is ${version.text}; --snapshot needs 9.5 or later`);
  logger.debug({ pgDump: version.text }, 'snapshot mode: the appliance can export snapshots to its pg_dump');
  return { mode: 'snapshot', pgDump: version.text };
}
