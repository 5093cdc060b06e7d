import type { S3Config } from '../config/load.ts';

/**
 * What the bucket should carry besides our objects, as S3 API documents an operator can apply
 * (`aws s3api put-bucket-lifecycle-configuration --bucket B --lifecycle-configuration file://…`):
 * a lifecycle rule that aborts incomplete multipart uploads under the prefix (a worker killed
 * mid-upload leaves one that nothing else can remove), and, for ransomware-resistant retention,
 * versioning with Object Lock in default retention — then the credentials need no delete right
 * (s3.deletes: false) and old backups expire by the bucket's rules.
 */
export interface BucketSetup {
  readonly lifecycle: { readonly Rules: readonly Record<string, unknown>[] };
  readonly objectLock: Record<string, unknown>;
  readonly notes: readonly string[];
}

export function bucketSetup(s3: Pick<S3Config, 'bucket' | 'prefix' | 'deletes'>, options: { abortAfterDays?: number; retainDays?: number } = {}): BucketSetup {
  const prefix = s3.prefix.replace(/^\/+|\/+$/g, '');
  const abortAfterDays = options.abortAfterDays ?? 1;
  const retainDays = options.retainDays ?? 30;
  return {
    lifecycle: {
      Rules: [
        {
          ID: 'vcsa-backup-abort-incomplete-multipart-uploads',
          Status: 'Enabled',
          Filter: { Prefix: prefix ? `${prefix}/` : '' },
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: abortAfterDays },
        },
        ...(s3.deletes
          ? []
          : [
              {
                ID: 'vcsa-backup-expire-old-versions',
                Status: 'Enabled',
                Filter: { Prefix: prefix ? `${prefix}/` : '' },
                NoncurrentVersionExpiration: { NoncurrentDays: 1 },
                Expiration: { Days: retainDays + 1 },
              },
            ]),
      ],
    },
    objectLock: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: retainDays } } },
    notes: [
      `Object Lock can only be enabled on a bucket created with it (aws s3api create-bucket --object-lock-enabled-for-bucket) or, on AWS, on a versioned bucket; it turns versioning on.`,
      `With Object Lock, set s3.deletes: false: \`vcsa-backup iam-policy\` then grants no s3:DeleteObject, and \`prune\` reports what it would delete instead of deleting; the lifecycle rule expires backups after the retention.`,
      `GOVERNANCE lets a principal with s3:BypassGovernanceRetention delete early; COMPLIANCE lets nobody, not even the account root, until the retention ends.`,
    ],
  };
}
