import assert from 'node:assert/strict';
import { test } from 'node:test';
import { iamPolicy } from '../../src/storage/iam-policy.ts';

/** Every action the tool performs on objects under the prefix: write, read back, delete, abort uploads. */
const objectActions = ['s3:PutObject', 's3:GetObject', 's3:DeleteObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'];
const listActions = ['s3:ListBucket', 's3:ListBucketMultipartUploads'];

/** The two statements every policy for bucket "backups", prefix "vcsa" has. */
const objectsAndListing = [
  { Sid: 'VcsaBackupObjects', Effect: 'Allow', Action: objectActions, Resource: ['arn:aws:s3:::backups/vcsa/*'] },
  {
    Sid: 'VcsaBackupList',
    Effect: 'Allow',
    Action: listActions,
    Resource: ['arn:aws:s3:::backups'],
    Condition: { StringLike: { 's3:prefix': ['vcsa/*', 'vcsa'] } },
  },
];

void test('the IAM policy allows objects under the prefix only, and listing only under it; no bucket creation unless asked', () => {
  assert.deepEqual(iamPolicy({ bucket: 'backups', prefix: 'vcsa/', createBucket: false }), { Version: '2012-10-17', Statement: objectsAndListing });
});

void test('s3.createBucket: true adds exactly the CreateBucket grant, on the bucket', () => {
  assert.deepEqual(iamPolicy({ bucket: 'backups', prefix: 'vcsa', createBucket: true }), {
    Version: '2012-10-17',
    Statement: [
      ...objectsAndListing,
      { Sid: 'VcsaBackupCreateBucket', Effect: 'Allow', Action: ['s3:CreateBucket'], Resource: ['arn:aws:s3:::backups'] },
    ],
  });
});

void test('an empty prefix grants the whole bucket, without a listing condition; slashes around the prefix do not matter', () => {
  assert.deepEqual(iamPolicy({ bucket: 'b', prefix: '', createBucket: false }).Statement, [
    { Sid: 'VcsaBackupObjects', Effect: 'Allow', Action: objectActions, Resource: ['arn:aws:s3:::b/*'] },
    { Sid: 'VcsaBackupList', Effect: 'Allow', Action: listActions, Resource: ['arn:aws:s3:::b'] },
  ]);
  assert.deepEqual(iamPolicy({ bucket: 'b', prefix: '/fleet/a/', createBucket: false }), iamPolicy({ bucket: 'b', prefix: 'fleet/a', createBucket: false }));
  const nested = iamPolicy({ bucket: 'b', prefix: 'fleet/a', createBucket: false }) as { Statement: { Resource: string[]; Condition?: unknown }[] };
  assert.deepEqual(nested.Statement[0]?.Resource, ['arn:aws:s3:::b/fleet/a/*']);
  assert.deepEqual(nested.Statement[1]?.Condition, { StringLike: { 's3:prefix': ['fleet/a/*', 'fleet/a'] } });
});
