import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import {
  AbortMultipartUploadCommand,
  ChecksumAlgorithm,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type PutObjectCommandInput,
  type S3Client,
} from '@aws-sdk/client-s3';

/**
 * Uploads a local file to S3 in parts read straight from the file into a few part buffers that
 * are allocated once and reused: memory stays at queueSize × partSize (32 MiB by default)
 * whatever the file's size, and makes no garbage. lib-storage's Upload, which this replaces for
 * files, assembles each part from stream chunks and allocates anew for every part, which a
 * worker's peak memory showed (issue 11: ≤ 200 MiB while backing up a 2 GiB dump). Each part is
 * a Buffer, so the SDK's own retries can send it again. The sha256 of the whole file is taken on
 * the way, part by part in order.
 */
export interface FileUpload {
  readonly client: S3Client;
  readonly path: string;
  readonly bytes: number;
  readonly partSize: number;
  readonly queueSize: number;
  /** Bucket, key and the object's settings (content type, metadata, storage class, encryption). */
  readonly object: Omit<PutObjectCommandInput, 'Body' | 'ContentLength'> & { Bucket: string; Key: string };
  /** The client computes checksums where supported (AWS): the multipart upload must say which. */
  readonly checksums: boolean;
  readonly signal?: AbortSignal | undefined;
  readonly onProgress?: ((loaded: number, total: number) => void) | undefined;
}

/** The local file could not be read (or shrank while it was read): not the S3 server's fault. */
export class LocalFileError extends Error {}

async function readFully(file: FileHandle, buffer: Buffer, length: number, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await file.read(buffer, done, length - done, position + done));
    } catch (err) {
      throw new LocalFileError(`reading ${path}: ${(err as Error).message}`, { cause: err });
    }
    if (bytesRead === 0) throw new LocalFileError(`${path} ended after ${position + done} bytes while it was being uploaded; it was expected to hold more`);
    done += bytesRead;
  }
}

export async function uploadFile(upload: FileUpload): Promise<{ sha256: string }> {
  const { client, path, bytes, partSize, queueSize, object, signal, onProgress } = upload;
  const hash = createHash('sha256');
  const send = signal === undefined ? {} : { abortSignal: signal };
  const file = await open(path, 'r').catch((err: unknown) => {
    throw new LocalFileError(`opening ${path}: ${(err as Error).message}`, { cause: err });
  });
  try {
    if (bytes <= partSize) {
      const body = Buffer.allocUnsafe(bytes);
      await readFully(file, body, bytes, 0, path);
      hash.update(body);
      await client.send(new PutObjectCommand({ ...object, Body: body, ContentLength: bytes }), send);
      onProgress?.(bytes, bytes);
      return { sha256: hash.digest('hex') };
    }

    const created = await client.send(new CreateMultipartUploadCommand({ ...object, ...(upload.checksums ? { ChecksumAlgorithm: ChecksumAlgorithm.CRC32 } : {}) }), send);
    const uploadId = created.UploadId;
    if (!uploadId) throw new Error('the S3 server started a multipart upload without an UploadId');
    const target = { Bucket: object.Bucket, Key: object.Key, UploadId: uploadId };
    const parts: CompletedPart[] = [];
    const spare: Buffer[] = [];
    const inflight = new Set<Promise<void>>();
    let failure: Error | undefined;
    let loaded = 0;
    try {
      for (let offset = 0, partNumber = 1; offset < bytes && failure === undefined; offset += partSize, partNumber++) {
        signal?.throwIfAborted();
        // At most queueSize parts in the air: wait for one to land (and give its buffer back).
        while (inflight.size >= queueSize) await Promise.race(inflight);
        if (failure !== undefined) break;
        const length = Math.min(partSize, bytes - offset);
        const buffer = spare.pop() ?? Buffer.allocUnsafe(partSize);
        const body = buffer.subarray(0, length);
        await readFully(file, body, length, offset, path);
        hash.update(body);
        const sending: Promise<void> = client
          .send(new UploadPartCommand({ ...target, PartNumber: partNumber, Body: body, ContentLength: length }), send)
          .then(
            (res) => {
              if (!res.ETag) throw new Error(`the S3 server answered part ${partNumber} without an ETag`);
              parts.push({
                PartNumber: partNumber,
                ETag: res.ETag,
                ...(res.ChecksumCRC32 ? { ChecksumCRC32: res.ChecksumCRC32 } : {}),
                ...(res.ChecksumCRC32C ? { ChecksumCRC32C: res.ChecksumCRC32C } : {}),
                ...(res.ChecksumCRC64NVME ? { ChecksumCRC64NVME: res.ChecksumCRC64NVME } : {}),
                ...(res.ChecksumSHA1 ? { ChecksumSHA1: res.ChecksumSHA1 } : {}),
                ...(res.ChecksumSHA256 ? { ChecksumSHA256: res.ChecksumSHA256 } : {}),
              });
              loaded += length;
              onProgress?.(loaded, bytes);
            },
          )
          .catch((err: unknown) => {
            failure ??= err instanceof Error ? err : new Error(String(err));
          })
          .finally(() => {
            inflight.delete(sending);
            spare.push(buffer);
          });
        inflight.add(sending);
      }
      await Promise.all(inflight);
      if (failure !== undefined) throw failure;
      parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
      await client.send(new CompleteMultipartUploadCommand({ ...target, MultipartUpload: { Parts: parts } }), send);
    } catch (err) {
      // Every part has settled: nothing can land after the abort and leave a part behind.
      await Promise.allSettled(inflight);
      await client.send(new AbortMultipartUploadCommand(target)).catch(() => undefined);
      throw err;
    }
    return { sha256: hash.digest('hex') };
  } finally {
    await file.close();
  }
}
