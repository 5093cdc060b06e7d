import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config, TargetConfig } from '../config/load.ts';
import { AbortedError, BackupError, errorMessage } from '../errors.ts';
import { sha256OfFile } from '../hashing.ts';
import type { Logger } from '../log.ts';
import type { ProgressListener } from '../backup/progress.ts';

/** The native lease's check (structurally the fleet lease's guard); a no-op without a lease. */
export interface NativeLeaseGuard {
  assertHeld(step: string): Promise<void>;
}
export const noLeaseGuard: NativeLeaseGuard = { assertHeld: () => Promise.resolve() };
import { createSpoolDir, spoolHost, writeSpoolRecord, type SpoolArtifact, type SpoolRecord } from '../backup/spool.ts';
import { ApplianceApi, quoteMessages, type BackupJobStatus, type BackupRequest } from './api-client.ts';
import { applianceVersion, backupJobStatus, backupParts, cancelBackupJobAndWait, jobFailedError, startBackupJob, validateBackup } from './backup-api.ts';
import { nativeMetadataFile, type NativeBackupInfo } from './backup-info.ts';
import type { NativeApiSettings } from './settings.ts';
import { startSftpServer, type RunningSftpServer } from './sftp-server.ts';

export interface ApplianceBackupInput {
  readonly config: Config;
  readonly target: TargetConfig;
  readonly id: string;
  readonly logger: Logger;
  readonly signal?: AbortSignal;
  readonly onProgress?: ProgressListener;
  /** The native lease's guard: checked at every poll; a lost lease cancels the appliance's job. */
  readonly guard: NativeLeaseGuard;
  /** Told the appliance's job id once it started (for the native watchdog), and null when it ended. */
  readonly onApplianceJob?: (jobId: string | null) => Promise<void>;
}

/** How long a cancelled appliance job may take to report that it ended. */
const cancelConfirmMs = 30_000;

export function nativeApiOf(target: TargetConfig): NativeApiSettings {
  if (target.executor.type !== 'vcsa-api' || !target.native) {
    throw new BackupError('NATIVE_NOT_NATIVE', `${target.name} uses profile ${target.profile}, not vcsa-native`, { permanent: true });
  }
  return target.executor;
}

function locationHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * The appliance's own file-based backup, received into the spool: login (dialect probed) →
 * version → parts → a fresh SFTP receiver → validate the location → start the job → poll until
 * SUCCEEDED (progress reported) → close the receiver → check what arrived against the
 * appliance's metadata → move it into the spool and write spool.json (the spool's commit). On
 * failure, timeout or cancellation the appliance's job is cancelled, the receiver closed, and
 * the partial spool removed: nothing half-received is ever uploaded.
 */
export async function takeApplianceBackup(input: ApplianceBackupInput): Promise<SpoolRecord> {
  const { config, target, id, guard } = input;
  const settings = nativeApiOf(target);
  const options = target.native ?? { parts: ['common'] };
  const logger = input.logger.child({ step: 'appliance-backup' });
  const emit = input.onProgress ?? (() => undefined);
  const timeoutMs = config.native.jobTimeoutSeconds * 1000;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = input.signal ? AbortSignal.any([input.signal, timeout]) : timeout;
  const createdAt = new Date().toISOString();
  const api = new ApplianceApi(settings, logger);
  const spool = await createSpoolDir(config.spool.dir, target.name, id, config.spool.minFreeMiB);
  const incoming = join(spool.dir, 'incoming');
  let receiver: RunningSftpServer | undefined;
  let started: BackupJobStatus | undefined;
  let finished = false;
  let committed = false;
  let lastPercent = 0;
  try {
    emit({ target: target.name, step: 'precheck' });
    await api.login(signal);
    const version = await applianceVersion(api, signal);
    const offered = await backupParts(api, signal);
    const unknown = options.parts.filter((p) => !offered.some((o) => o.id === p));
    if (unknown.length > 0) {
      throw new BackupError('NATIVE_PART_UNKNOWN', `${target.name}: the appliance offers no backup part ${unknown.map((p) => `"${p}"`).join(', ')} (it has ${offered.map((o) => o.id).join(', ')}); fix native.parts or targets[].native.parts`, { permanent: true });
    }
    const folder = `${target.name}-${id}`;
    receiver = await startSftpServer({
      mode: 'write-only',
      dir: incoming,
      folder,
      listenHost: config.native.receiver.listenHost,
      listenPort: config.native.receiver.listenPort,
      logger: logger.child({ component: 'receiver' }),
      onBytes: (bytes) => emit({ target: target.name, step: 'appliance-backup', artifact: `${lastPercent}%`, bytes }),
    });
    const port = config.native.receiver.advertisePort ?? receiver.port;
    const location = `sftp://${locationHost(config.native.receiver.advertiseHost)}:${port}${receiver.folder}`;
    const request: BackupRequest = {
      parts: options.parts,
      location_type: 'SFTP',
      location,
      location_user: receiver.credentials.user,
      location_password: receiver.credentials.password,
      ...(options.backupPassword ? { backup_password: options.backupPassword.reveal() } : {}),
      comment: `vcsa-backup ${id}`,
    };
    logger.info({ version: version.version, build: version.build, dialect: api.dialect, parts: options.parts, location, passwordProtected: options.backupPassword !== undefined }, 'validating the backup location on the appliance');
    const validation = await validateBackup(api, request, signal);
    if (validation.status === 'ERROR') {
      throw new BackupError('NATIVE_VALIDATE_FAILED', `the appliance at ${api.url} cannot use the receiver ${location}: ${quoteMessages(validation.messages)}. Check native.receiver.advertise (the appliance must reach it) and firewalls`);
    }
    if (validation.status === 'WARNING') logger.warn({ messages: quoteMessages(validation.messages) }, 'the appliance warns about the backup location');
    await guard.assertHeld('appliance-backup');

    started = await startBackupJob(api, request, signal);
    const jobStartedAt = Date.now();
    logger.info({ applianceJobId: started.id }, 'appliance backup job started');
    await input.onApplianceJob?.(started.id);
    let job = started;
    for (;;) {
      lastPercent = Math.round(job.progress ?? 0);
      emit({ target: target.name, step: 'appliance-backup', artifact: `${lastPercent}%`, bytes: receiver.bytesWritten() });
      if (job.state === 'SUCCEEDED') break;
      if (job.state === 'FAILED' || job.state === 'NONE') {
        finished = true;
        throw jobFailedError(api.url, job);
      }
      await sleep(config.native.pollSeconds * 1000, undefined, { signal });
      await guard.assertHeld('appliance-backup');
      job = await backupJobStatus(api, started.id, signal);
    }
    finished = true;
    const applianceJobMs = Date.now() - jobStartedAt;
    logger.info({ applianceJobId: job.id, ms: applianceJobMs, bytes: receiver.bytesWritten(), relogins: api.relogins }, 'appliance reports the backup SUCCEEDED');
    // Nothing more may arrive once the job is done: close before looking at what came.
    await receiver.close();

    const artifacts = await spoolReceived(incoming, spool.dir, api.url, job.id);
    const metadata = artifacts.find((a) => a.name === nativeMetadataFile);
    const native: NativeBackupInfo = {
      applianceVersion: version.version,
      applianceBuild: version.build,
      applianceJobId: job.id,
      parts: options.parts,
      passwordProtected: options.backupPassword !== undefined,
      apiDialect: api.dialect ?? 'api',
      metadataFile: metadata ? metadata.file : null,
      applianceJobMs,
    };
    const record: SpoolRecord = {
      version: 1,
      target: target.name,
      id,
      profile: target.profile,
      appliance: api.url,
      host: spoolHost(),
      dir: spool.dir,
      createdAt,
      quiesce: null,
      artifacts,
      timings: { applianceJobMs },
      native,
    };
    await writeSpoolRecord(record);
    committed = true;
    await input.onApplianceJob?.(null);
    return record;
  } catch (err) {
    const timedOut = timeout.aborted && !input.signal?.aborted;
    if (started && !finished) {
      // SIGTERM, timeout, a lost lease or a poll that failed for good: the appliance must not
      // keep pushing into a receiver that is about to close. Its job is over only once the
      // appliance says so; until then the native slot stays taken (see withNativeLease).
      const applianceJobId = started.id;
      await cancelBackupJobAndWait(api, applianceJobId, AbortSignal.timeout(cancelConfirmMs)).then(
        (ended) => {
          finished = true;
          logger.warn({ applianceJobId, state: ended.state }, 'appliance backup job cancelled; the appliance reports it ended');
        },
        (cancelErr: unknown) => logger.error({ err: errorMessage(cancelErr), applianceJobId }, 'could not cancel the appliance backup job, or it did not end in time; leaving it to the native watchdog'),
      );
    }
    if (timedOut) {
      throw new BackupError('NATIVE_JOB_TIMEOUT', `the appliance backup of ${target.name} did not finish within ${config.native.jobTimeoutSeconds} s (native.jobTimeoutSeconds)${started ? `; job ${started.id} was cancelled on the appliance` : ''}`, { cause: err });
    }
    if (input.signal?.aborted && !(err instanceof BackupError && err.code !== 'ABORTED')) {
      throw new AbortedError(`the appliance backup of ${target.name}${started ? ` (job ${started.id}, cancelled on the appliance)` : ''}`, input.signal.reason);
    }
    throw err;
  } finally {
    await receiver?.close();
    if (!committed) {
      await spool.remove().catch(() => undefined);
      // A job not known to have ended stays recorded: the caller leaves its slot to the native watchdog.
      if (started && finished) await input.onApplianceJob?.(null).catch(() => undefined);
    }
    await api.logout();
  }
}

interface ReceivedFile {
  readonly relative: string;
  readonly bytes: number;
}

async function listReceived(root: string, prefix = ''): Promise<ReceivedFile[]> {
  const out: ReceivedFile[] = [];
  for (const entry of await readdir(join(root, prefix), { withFileTypes: true })) {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await listReceived(root, relative)));
    else if (entry.isFile()) out.push({ relative, bytes: (await stat(join(root, relative))).size });
  }
  return out;
}

interface MetadataView {
  readonly files?: readonly { name: string; size?: number; sha256?: string }[];
}

/** Reads the file list from backup-metadata.json when the appliance wrote one with a `Files` list. */
export function parseNativeMetadata(text: string): MetadataView & { version?: string; build?: string; parts?: readonly string[]; encrypted?: boolean } {
  const raw = JSON.parse(text) as Record<string, unknown>;
  const files = Array.isArray(raw['Files'])
    ? (raw['Files'] as Record<string, unknown>[]).map((f) => ({
        name: typeof f['Name'] === 'string' ? f['Name'] : '',
        ...(typeof f['Size'] === 'number' ? { size: f['Size'] } : {}),
        ...(typeof f['Sha256'] === 'string' ? { sha256: f['Sha256'] } : {}),
      }))
    : undefined;
  return {
    ...(files ? { files } : {}),
    ...(typeof raw['Version'] === 'string' ? { version: raw['Version'] } : {}),
    ...(typeof raw['Build'] === 'string' ? { build: raw['Build'] } : {}),
    ...(Array.isArray(raw['Parts']) ? { parts: (raw['Parts'] as unknown[]).map(String) } : {}),
    ...(typeof raw['EncryptionEnabled'] === 'boolean' ? { encrypted: raw['EncryptionEnabled'] } : {}),
  };
}

/**
 * Checks what the receiver got against the appliance's metadata (every listed file present,
 * with its size and sha256 when listed), then moves each file into the spool and hashes it.
 * A job that SUCCEEDED with files missing is a failed backup (NATIVE_INCOMPLETE).
 */
async function spoolReceived(incoming: string, spoolDir: string, url: string, jobId: string): Promise<SpoolArtifact[]> {
  await mkdir(incoming, { recursive: true });
  // The receiver's root holds the one job folder the appliance wrote into.
  const received = await listReceived(incoming);
  if (received.length === 0) throw new BackupError('NATIVE_INCOMPLETE', `the appliance at ${url} reports job ${jobId} SUCCEEDED but sent no files to the receiver`);
  const metadataEntry = received.find((f) => f.relative === nativeMetadataFile || f.relative.endsWith(`/${nativeMetadataFile}`));
  const artifacts: SpoolArtifact[] = [];
  const hashes = new Map<string, string>();
  for (const f of received) hashes.set(f.relative, (await sha256OfFile(join(incoming, f.relative))).sha256);
  if (metadataEntry) {
    let meta: MetadataView;
    try {
      meta = parseNativeMetadata(await readFile(join(incoming, metadataEntry.relative), 'utf8'));
    } catch (err) {
      throw new BackupError('NATIVE_INCOMPLETE', `${nativeMetadataFile} from ${url} (job ${jobId}) is not valid JSON (${errorMessage(err)}); the transfer was probably cut`);
    }
    for (const listed of meta.files ?? []) {
      const got = received.find((r) => r.relative === listed.name || r.relative.endsWith(`/${listed.name}`));
      if (!got) throw new BackupError('NATIVE_INCOMPLETE', `job ${jobId} on ${url} lists ${listed.name} in its metadata, but the receiver did not get it`);
      if (listed.size !== undefined && got.bytes !== listed.size) {
        throw new BackupError('NATIVE_INCOMPLETE', `${listed.name} arrived with ${got.bytes} bytes, the appliance's metadata says ${listed.size}: the transfer was cut`);
      }
      if (listed.sha256 !== undefined && hashes.get(got.relative) !== listed.sha256) {
        throw new BackupError('NATIVE_INCOMPLETE', `${listed.name} arrived with a sha256 other than the one in the appliance's metadata: the transfer was damaged`);
      }
    }
  }
  for (const f of received) {
    // The folder the appliance wrote into is ours (<target>-<id>): drop it from the names.
    const name = f.relative.includes('/') ? f.relative.slice(f.relative.indexOf('/') + 1) : f.relative;
    const file = name.replace(/\//g, '__');
    await rename(join(incoming, f.relative), join(spoolDir, file));
    artifacts.push({ name, file, format: 'vcsa-native', rawBytes: f.bytes, rawSha256: hashes.get(f.relative) ?? '', dumpMs: 0 });
  }
  await rm(incoming, { recursive: true, force: true });
  // Metadata first: a reader of the manifest finds the description before the archives.
  return artifacts.sort((a, b) => (a.name === nativeMetadataFile ? -1 : b.name === nativeMetadataFile ? 1 : a.name.localeCompare(b.name)));
}
