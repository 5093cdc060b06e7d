import type { S3Config } from '../config/load.ts';

/**
 * The least an IAM user or role needs for vcsa-backup on AWS: objects under the configured prefix
 * (write, read back for verification and restore, delete for retention unless s3.deletes is false,
 * abort multipart uploads)
 * and listing the bucket under that prefix. Nothing bucket-wide beyond that.
 */
export function iamPolicy(s3: Pick<S3Config, 'bucket' | 'prefix' | 'createBucket'> & { readonly deletes?: boolean }): Record<string, unknown> {
  const prefix = s3.prefix.replace(/^\/+|\/+$/g, '');
  const objects = `arn:aws:s3:::${s3.bucket}/${prefix ? `${prefix}/` : ''}*`;
  const bucket = `arn:aws:s3:::${s3.bucket}`;
  const statements: Record<string, unknown>[] = [
    {
      Sid: 'VcsaBackupObjects',
      Effect: 'Allow',
      // s3.deletes: false (Object Lock / versioning): no delete right, so stolen worker
      // credentials cannot destroy backups; expiry is the bucket's retention and lifecycle.
      Action: ['s3:PutObject', 's3:GetObject', ...(s3.deletes === false ? [] : ['s3:DeleteObject']), 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'],
      Resource: [objects],
    },
    {
      Sid: 'VcsaBackupList',
      Effect: 'Allow',
      Action: ['s3:ListBucket', 's3:ListBucketMultipartUploads'],
      Resource: [bucket],
      ...(prefix ? { Condition: { StringLike: { 's3:prefix': [`${prefix}/*`, prefix] } } } : {}),
    },
  ];
  if (s3.createBucket) statements.push({ Sid: 'VcsaBackupCreateBucket', Effect: 'Allow', Action: ['s3:CreateBucket'], Resource: [bucket] });
  return { Version: '2012-10-17', Statement: statements };
}
