/** What a backup reports as it goes: CLI progress lines, job progress in Redis, the dashboard. */
export type BackupStep = 'precheck' | 'stop' | 'dump' | 'start' | 'compress' | 'upload' | 'verify' | 'manifest' | 'retention' | 'done' | 'appliance-backup';

export interface ProgressEvent {
  readonly target: string;
  readonly step: BackupStep;
  readonly artifact?: string;
  readonly bytes?: number;
  readonly totalBytes?: number;
}

export type ProgressListener = (event: ProgressEvent) => void;

/**
 * Checked before each step that touches the appliance. The fleet runner's guard throws when its
 * fenced lease is no longer held (a watchdog may be restarting the appliance); the in-process
 * `backup` command has no lease.
 */
export interface QuiesceGuard {
  assertHeld(step: BackupStep): Promise<void>;
}

export const noGuard: QuiesceGuard = { assertHeld: () => Promise.resolve() };
