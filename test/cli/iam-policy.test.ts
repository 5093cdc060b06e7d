import assert from 'node:assert/strict';
import { test } from 'node:test';
import { iamPolicy } from '../../src/storage/iam-policy.ts';

void test('the IAM policy allows objects under the prefix only, and listing only under it', () => {
  const policy = iamPolicy({ bucket: 'backups', prefix: 'vcsa/', createBucket: false }) as { Statement: { Action: string[]; Resource: string[]; Condition?: unknown }[] };
  const [objects, list] = policy.Statement;
  assert.deepEqual(objects?.Resource, ['arn:aws:s3:::backups/vcsa/*']);
  assert.ok(objects?.Action.includes('s3:AbortMultipartUpload'));
  assert.ok(!objects?.Action.some((a) => a === 's3:*' || a.startsWith('s3:PutBucket')));
  assert.deepEqual(list?.Resource, ['arn:aws:s3:::backups']);
  assert.deepEqual(list?.Condition, { StringLike: { 's3:prefix': ['vcsa/*', 'vcsa'] } });
  assert.equal(policy.Statement.length, 2, 'no CreateBucket unless s3.createBucket');
  assert.equal(iamPolicy({ bucket: 'b', prefix: 'p', createBucket: true }).Statement instanceof Array, true);
});
