import { join } from 'node:path';
import type { Config } from '../config/load.ts';
import type { Logger } from '../log.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { toolVersion } from '../version.ts';
import { compressOnce, type TransformedFile, type GzippedDump } from './compress.ts';
import { encryptedSuffix, encryptionTarget, encryptOnce, type EncryptedFile } from './encrypt.ts';
import { artifactKey, manifestFormat, manifestKey, sseRecord, type Manifest, type ManifestArtifact } from './manifest.ts';
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

export interface UploadResult {
  readonly manifest: Manifest;
  readonly manifestKey: string;
}

/**
 * gzip → (encrypt) → upload and verify every artifact of a spool, without the manifest. With
 * quiesce.startServicesAfter: upload this runs inside the quiesced section; `uploadSpool` then
 * commits what it returns once the services are back.
 */
export async function uploadArtifacts(input: UploadStepInput): Promise<UploadedArtifacts> {
  const { config, spool, store, logger, signal } = input;
  const emit = input.onProgress ?? (() => undefined);
  const timings: Record<string, number> = {};
  const artifacts: ManifestArtifact[] = [];

  const compressAt = Date.now();
  const compressed: GzippedDump[] = [];
  for (const artifact of spool.artifacts) {
    emit({ target: spool.target, step: 'compress', artifact: artifact.name });
    compressed.push(await compressOnce(join(spool.dir, artifact.file), config.compression, signal));
  }
  timings['compressMs'] = Date.now() - compressAt;

  // Encrypted after gzip: ciphertext does not compress. Once per spool, like compression.
  const encryption = config.encryption;
  const stored: (TransformedFile | EncryptedFile)[] = [...compressed];
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
      // Hashed while compressing, unless the dump step took it (older spools).
      rawSha256: artifact.rawSha256 ?? compressed[i]?.rawSha256 ?? '',
      compression: 'gzip',
      encryption: encrypted,
      format: artifact.format,
    });
  }
  timings['uploadMs'] = Date.now() - uploadAt;

  return { artifacts, timings };
}

/**
 * spool → gzip → (encrypt, when configured) → upload each artifact (verified by the store) →
 * manifest.json last → delete the spool. `uploaded`: the artifacts this process just uploaded
 * with the services stopped (startServicesAfter: upload); they are committed as they are. Run it
 * again after a failure and it starts over from the spool. The spool is deleted only after the
 * manifest, the commit point, is stored and verified.
 */
export async function uploadSpool(
  input: UploadStepInput & {
    readonly uploaded?: UploadedArtifacts | null;
    /** Runs just before the manifest is written (the commit point); throwing stops the commit. */
    readonly beforeCommit?: () => Promise<void>;
  },
): Promise<UploadResult> {
  const { config, spool, store, logger, signal } = input;
  const emit = input.onProgress ?? (() => undefined);
  const uploaded = input.uploaded ?? (await uploadArtifacts(input));
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
    ...sseRecord(config.s3),
  };
  const key = manifestKey(config.s3.prefix, spool.target, spool.id);
  await input.beforeCommit?.();
  await store.putBytes(key, Buffer.from(JSON.stringify(manifest, null, 2)), { contentType: 'application/json', ...(signal ? { signal } : {}) });
  logger.info({ manifestKey: key }, 'backup committed');
  await removeSpool(spool.dir);
  return { manifest, manifestKey: key };
}
