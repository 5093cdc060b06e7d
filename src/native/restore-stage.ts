import { mkdir, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { findBackup, type CatalogEntry } from '../catalog/catalog.ts';
import type { Config } from '../config/load.ts';
import { decryptionKeys } from '../crypto/key-ring.ts';
import { BackupError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { fetchArtifacts } from '../restore/fetch-artifacts.ts';
import { createWorkDir } from '../restore/work-dir.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { startSftpServer, type SftpCredentials } from './sftp-server.ts';

export interface StagedRestore {
  readonly entry: CatalogEntry;
  /** What to paste into the installer's "Restore" stage (Location). */
  readonly location: string;
  readonly credentials: SftpCredentials;
  readonly hostKeyFingerprint: string;
  readonly files: readonly { name: string; bytes: number; sha256: string }[];
  /** Stops serving and deletes the staged files. */
  close(): Promise<void>;
}

/**
 * `restore-stage`: serve one vcsa-native backup from S3, read-only over SFTP, for the vCenter
 * installer's "Restore" stage (or `…/recovery/restore/job`) on a freshly deployed appliance. The
 * objects are downloaded and checked against the manifest (size and sha256, then decrypted and
 * decompressed back to exactly the bytes the appliance wrote, checked again), then served under
 * one folder with a user and password made for this session only.
 */
export async function stageRestore(input: {
  readonly config: Config;
  readonly target: string;
  readonly backup: string;
  readonly store: ObjectStore;
  readonly logger: Logger;
  readonly listenHost: string;
  readonly listenPort: number;
  readonly advertiseHost: string;
  readonly advertisePort?: number;
  readonly signal?: AbortSignal;
}): Promise<StagedRestore> {
  const { config, store, logger } = input;
  const entry = await findBackup(store, config.s3.prefix, input.target, input.backup, { logger });
  if (!entry.manifest.native) {
    throw new BackupError('RESTORE_STAGE_NOT_NATIVE', `backup ${entry.id} of ${input.target} is a ${entry.manifest.profile} database dump, not an appliance file-based backup; use \`vcsa-backup restore\` for it`, { permanent: true });
  }
  const work = await createWorkDir(config.spool.dir, 'restore');
  try {
    const fetched = await fetchArtifacts(store, entry.manifest, join(work.dir), { ...(input.signal ? { signal: input.signal } : {}), keys: decryptionKeys(config.encryption) });
    const serveDir = join(work.dir, 'serve');
    for (const f of fetched) {
      const dest = join(serveDir, ...f.artifact.name.split('/'));
      await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
      await rename(f.path, dest);
    }
    const folder = `${entry.manifest.target}-${entry.id}`;
    const server = await startSftpServer({ mode: 'read-only', dir: serveDir, folder, listenHost: input.listenHost, listenPort: input.listenPort, logger: logger.child({ component: 'restore-stage' }) });
    const host = input.advertiseHost.includes(':') ? `[${input.advertiseHost}]` : input.advertiseHost;
    const location = `sftp://${host}:${input.advertisePort ?? server.port}${server.folder}`;
    logger.info({ backupId: entry.id, location, user: server.credentials.user, files: fetched.length }, 'serving the backup read-only for the appliance restore');
    return {
      entry,
      location,
      credentials: server.credentials,
      hostKeyFingerprint: server.hostKeyFingerprint,
      files: entry.manifest.artifacts.map((a) => ({ name: a.name, bytes: a.rawBytes, sha256: a.rawSha256 })),
      close: async () => {
        await server.close();
        await work.remove();
      },
    };
  } catch (err) {
    await work.remove();
    throw err;
  }
}
