import { setTimeout as sleep } from 'node:timers/promises';
import { BackupError } from '../errors.ts';
import type { ApplianceApi, ApplianceVersion, BackupJobStatus, BackupPart, BackupRequest, LocalizableMessage } from './api-client.ts';
import { quoteMessages } from './api-client.ts';

/**
 * The file-based backup calls, in the dialect the client found: `…/appliance/recovery/backup/…`.
 * Only validate's path differs between 6.7 (`backup/validate`) and 7.0+ (`backup?action=validate`).
 */
export async function applianceVersion(api: ApplianceApi, signal?: AbortSignal): Promise<ApplianceVersion> {
  const v = await api.call<{ version?: string; build?: string; product?: string }>('GET', 'appliance/system/version', undefined, 'the version query', signal);
  return { version: v.version ?? 'unknown', build: v.build ?? 'unknown', ...(v.product ? { product: v.product } : {}) };
}

export function backupParts(api: ApplianceApi, signal?: AbortSignal): Promise<BackupPart[]> {
  return api.call<BackupPart[]>('GET', 'appliance/recovery/backup/parts', undefined, 'the parts query', signal);
}

export async function validateBackup(api: ApplianceApi, request: BackupRequest, signal?: AbortSignal): Promise<{ status: string; messages: readonly LocalizableMessage[] }> {
  if (!api.dialect) await api.login(signal);
  const path = api.dialect === 'rest' ? 'appliance/recovery/backup/validate' : 'appliance/recovery/backup?action=validate';
  const r = await api.call<{ status?: string; messages?: LocalizableMessage[] }>('POST', path, request, 'the location check (validate)', signal);
  return { status: r.status ?? 'OK', messages: r.messages ?? [] };
}

export async function startBackupJob(api: ApplianceApi, request: BackupRequest, signal?: AbortSignal): Promise<BackupJobStatus> {
  try {
    const job = await api.call<BackupJobStatus>('POST', 'appliance/recovery/backup/job', request, 'the backup job start', signal);
    if (typeof job.id !== 'string' || job.id === '') throw new BackupError('NATIVE_API_UNEXPECTED', `${api.url} started a backup job but returned no job id`);
    return job;
  } catch (err) {
    if (err instanceof BackupError && /NOT_ALLOWED_IN_CURRENT_STATE|already in progress/i.test(err.message)) {
      throw new BackupError('NATIVE_APPLIANCE_BUSY', `${err.message}; another backup or restore is running on the appliance (started by hand, by its own schedule, or by a worker that died): this job is retried later`, { cause: err });
    }
    throw err;
  }
}

export function backupJobStatus(api: ApplianceApi, id: string, signal?: AbortSignal): Promise<BackupJobStatus> {
  return api.call<BackupJobStatus>('GET', `appliance/recovery/backup/job/${encodeURIComponent(id)}`, undefined, 'the job status query', signal);
}

export async function cancelBackupJob(api: ApplianceApi, id: string, signal?: AbortSignal): Promise<void> {
  await api.call<unknown>('POST', `appliance/recovery/backup/job/${encodeURIComponent(id)}/cancel`, undefined, 'the job cancel', signal);
}

/**
 * Cancels the appliance's job and waits until the appliance no longer reports it INPROGRESS
 * (a cancel is a request: the appliance stops at its next step). A native job's window — what
 * `native.maxConcurrent` counts — is the appliance's job, so its slot is given back only after
 * this returns. A job that already ended is not cancelled. Rejects when `signal` fires first.
 */
export async function cancelBackupJobAndWait(api: ApplianceApi, id: string, signal: AbortSignal, pollMs = 250): Promise<BackupJobStatus> {
  let job = await backupJobStatus(api, id, signal);
  if (job.state !== 'INPROGRESS') return job;
  try {
    await cancelBackupJob(api, id, signal);
  } catch (err) {
    // It may have ended between the status and the cancel (NOT_ALLOWED_IN_CURRENT_STATE).
    job = await backupJobStatus(api, id, signal);
    if (job.state !== 'INPROGRESS') return job;
    throw err;
  }
  for (;;) {
    job = await backupJobStatus(api, id, signal);
    if (job.state !== 'INPROGRESS') return job;
    await sleep(pollMs, undefined, { signal });
  }
}

export function jobFailedError(url: string, job: BackupJobStatus): BackupError {
  return new BackupError('NATIVE_JOB_FAILED', `the appliance at ${url} reports backup job ${job.id} ${job.state} at ${job.progress ?? 0}%: ${quoteMessages(job.messages)}`, {
    details: { applianceJobId: job.id, state: job.state, progress: job.progress ?? 0 },
  });
}
