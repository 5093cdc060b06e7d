import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config/load.ts';
import { BackupError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { toolVersion } from '../version.ts';
import { compressOnce, type CompressedFile } from './compress.ts';
import { encryptedSuffix, encryptionTarget, encryptOnce, type EncryptedFile } from './encrypt.ts';
import { artifactKey, manifestFormat, manifestKey, type Manifest, type ManifestArtifact } from './manifest.ts';
import type { ProgressListener } from './progress.ts';
import { removeSpool, type SpoolRecord } from './spool.ts';

export interface UploadStepInput {
  readonly config: Config;
  readonly spool: SpoolRecord;
  readonly store: ObjectStore;
  readonly logger: Logger;
  readonly signal?: AbortSignal;
  readonly onProgress?: ProgressListener;
}

export interface UploadedArtifacts {
  readonly artifacts: readonly ManifestArtifact[];
  readonly timings: Readonly<Record<string, number>>;
}

const uploadedFile = 'uploaded.json';

export interface UploadResult {
  readonly manifest: Manifest;
  readonly manifestKey: string;
}

/**
 * quiesce.startServicesAfter: upload (the classic order): the step that uploads the artifacts
 * while the services are still stopped, for `quiesceAndDump`'s whileQuiesced; undefined otherwise.
 */
export function uploadWhileQuiesced(input: Omit<UploadStepInput, 'spool'>): ((spool: SpoolRecord) => Promise<void>) | undefined {
  if (input.config.quiesce.startServicesAfter !== 'upload') return undefined;
  return async (spool) => {
    await uploadArtifacts({ ...input, spool });
  };
}

/**
 * gzip → (encrypt) → upload and verify every artifact of a spool, without the manifest. Records
 * what was uploaded in the spool (uploaded.json), so that committing later — after the services
 * were started, with startServicesAfter: upload — does not send the objects again.
 */
export async function uploadArtifacts(input: UploadStepInput): Promise<UploadedArtifacts> {
  const { config, spool, store, logger, signal } = input;
  const emit = input.onProgress ?? (() => undefined);
  const timings: Record<string, number> = {};
  const artifacts: ManifestArtifact[] = [];

  const compressAt = Date.now();
  const compressed: CompressedFile[] = [];
  for (const artifact of spool.artifacts) {
    emit({ target: spool.target, step: 'compress', artifact: artifact.name });
    compressed.push(await compressOnce(join(spool.dir, artifact.file), config.compression.level, signal));
  }
  timings['compressMs'] = Date.now() - compressAt;

  // Encrypted after gzip: ciphertext does not compress. Once per spool, like compression.
  const encryption = config.encryption;
  const stored: (CompressedFile | EncryptedFile)[] = [...compressed];
  if (encryption) {
    const encryptAt = Date.now();
    const to = encryptionTarget(encryption);
    for (const [i, gz] of compressed.entries()) {
      stored[i] = await encryptOnce(gz.path, to, signal);
    }
    timings['encryptMs'] = Date.now() - encryptAt;
    logger.debug({ ms: timings['encryptMs'] }, 'artifacts encrypted');
  }

  const uploadAt = Date.now();
  for (const [i, artifact] of spool.artifacts.entries()) {
    const gz = stored[i];
    if (!gz) throw new Error('unreachable: compressed list shorter than artifacts');
    const encrypted = 'encryption' in gz ? gz.encryption : null;
    const file = encrypted ? `${artifact.file}.gz${encryptedSuffix}` : `${artifact.file}.gz`;
    const key = artifactKey(config.s3.prefix, spool.target, spool.id, file);
    emit({ target: spool.target, step: 'upload', artifact: artifact.name, bytes: 0, totalBytes: gz.bytes });
    const put = await store.putFile(key, gz.path, {
      contentType: encrypted ? 'application/octet-stream' : 'application/gzip',
      expectedSha256: gz.sha256,
      ...(signal ? { signal } : {}),
      onProgress: (sent, total) => emit({ target: spool.target, step: 'upload', artifact: artifact.name, bytes: sent, totalBytes: total }),
    });
    logger.info({ artifact: artifact.name, key, bytes: put.bytes }, 'uploaded and verified');
    artifacts.push({
      name: artifact.name,
      file,
      key,
      bytes: put.bytes,
      sha256: put.sha256,
      rawBytes: artifact.rawBytes,
      rawSha256: artifact.rawSha256,
      compression: 'gzip',
      encryption: encrypted,
      format: artifact.format,
    });
  }
  timings['uploadMs'] = Date.now() - uploadAt;

  const result: UploadedArtifacts = { artifacts, timings };
  await writeFile(join(spool.dir, uploadedFile), JSON.stringify(result));
  return result;
}

/** Artifacts an earlier call uploaded, if every one is still there with its size. */
async function readUploaded(dir: string, store: ObjectStore): Promise<UploadedArtifacts | null> {
  let recorded: UploadedArtifacts;
  try {
    recorded = JSON.parse(await readFile(join(dir, uploadedFile), 'utf8')) as UploadedArtifacts;
  } catch {
    return null;
  }
  for (const a of recorded.artifacts) {
    const info = await store.head(a.key);
    if (!info || info.bytes !== a.bytes) return null;
  }
  return recorded;
}

/**
 * spool → gzip → (encrypt, when configured) → upload each artifact (verified by the store) → manifest.json last → delete the
 * spool. Idempotent: run it again after a failure and it picks up from the spool. The spool is
 * deleted only after the manifest, the commit point, is stored and verified.
 */
export async function uploadSpool(input: UploadStepInput): Promise<UploadResult> {
  const { config, spool, store, logger, signal } = input;
  const emit = input.onProgress ?? (() => undefined);
  const reused = await readUploaded(spool.dir, store);
  const uploaded = reused ?? (await uploadArtifacts(input));
  const timings: Record<string, number> = { ...spool.timings, ...uploaded.timings };
  const artifacts = uploaded.artifacts;

  emit({ target: spool.target, step: 'manifest' });
  const manifest: Manifest = {
    format: manifestFormat,
    tool: `vcsa-backup ${toolVersion}`,
    id: spool.id,
    target: spool.target,
    profile: spool.profile,
    appliance: spool.appliance,
    createdAt: spool.createdAt,
    completedAt: new Date().toISOString(),
    quiesce: spool.quiesce,
    timings,
    artifacts,
    ...(spool.native ? { native: spool.native } : {}),
  };
  const key = manifestKey(config.s3.prefix, spool.target, spool.id);
  await store.putBytes(key, Buffer.from(JSON.stringify(manifest, null, 2)), { contentType: 'application/json', ...(signal ? { signal } : {}) });
  if (reused && !(await readUploaded(spool.dir, store))) {
    // Objects uploaded by an earlier attempt vanished while the manifest was written (prune takes
    // day-old objects without a manifest): withdraw the manifest and upload again next time.
    await store.deleteMany([key]);
    await rm(join(spool.dir, uploadedFile), { force: true });
    throw new BackupError('S3_VERIFY_FAILED', `objects of backup ${spool.id} uploaded earlier are gone from ${store.description}; they will be uploaded again`);
  }
  logger.info({ manifestKey: key }, 'backup committed');
  await removeSpool(spool.dir);
  return { manifest, manifestKey: key };
}
