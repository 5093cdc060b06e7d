/**
 * S3 helpers for tests: an S3Config pointing at an embedded endpoint, a raw SDK client for
 * looking behind the store's back.
 */
import { S3Client } from '@aws-sdk/client-s3';
import type { S3Config } from '../../src/config/load.ts';
import { Secret } from '../../src/config/secret.ts';
import type { EmbeddedS3 } from '../../src/storage/embedded-s3.ts';

export function s3ConfigFor(s3: Pick<EmbeddedS3, 'endpoint' | 'bucket' | 'region' | 'accessKeyId' | 'secretAccessKey'>, overrides: Partial<S3Config> = {}): S3Config {
  return {
    bucket: s3.bucket,
    prefix: 'vcsa',
    region: s3.region,
    endpoint: s3.endpoint,
    forcePathStyle: true,
    accessKeyId: new Secret(s3.accessKeyId, 'test'),
    secretAccessKey: new Secret(s3.secretAccessKey, 'test'),
    checksums: 'when-required',
    partSizeMiB: 5,
    queueSize: 2,
    verify: 'download',
    createBucket: false,
    deletes: true,
    ...overrides,
  };
}

/** A plain SDK client on the same endpoint, to create buckets or tamper with objects. */
export function rawS3Client(s3: Pick<EmbeddedS3, 'endpoint' | 'region' | 'accessKeyId' | 'secretAccessKey'>): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}
