/** What a backup reports as it goes: CLI progress lines, job progress in Redis, the dashboard. */
export type BackupStep = 'precheck' | 'stop' | 'snapshot' | 'dump' | 'start' | 'compress' | 'upload' | 'verify' | 'manifest' | 'retention' | 'done' | 'appliance-backup';

export interface ProgressEvent {
  readonly target: string;
  readonly step: BackupStep;
  readonly artifact?: string;
  readonly bytes?: number;
  readonly totalBytes?: number;
}

export type ProgressListener = (event: ProgressEvent) => void;
