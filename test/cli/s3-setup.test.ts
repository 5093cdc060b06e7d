import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bucketSetup } from '../../src/storage/bucket-setup.ts';
import { iamPolicy } from '../../src/storage/iam-policy.ts';

void test('s3-setup: an AbortIncompleteMultipartUpload rule scoped to the prefix', () => {
  const setup = bucketSetup({ bucket: 'b', prefix: '/vcsa/', deletes: true });
  assert.deepEqual(setup.lifecycle.Rules, [
    { ID: 'vcsa-backup-abort-incomplete-multipart-uploads', Status: 'Enabled', Filter: { Prefix: 'vcsa/' }, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } },
  ]);
});

void test('s3-setup with s3.deletes: false: old versions expire by lifecycle, Object Lock retention, and the IAM policy has no delete right', () => {
  const setup = bucketSetup({ bucket: 'b', prefix: 'vcsa', deletes: false }, { retainDays: 14, abortAfterDays: 2 });
  assert.equal(setup.lifecycle.Rules.length, 2);
  assert.deepEqual(setup.lifecycle.Rules[0]?.['AbortIncompleteMultipartUpload'], { DaysAfterInitiation: 2 });
  assert.deepEqual(setup.lifecycle.Rules[1]?.['Expiration'], { Days: 15 });
  assert.deepEqual(setup.objectLock, { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 14 } } });
  const actions = (iamPolicy({ bucket: 'b', prefix: 'vcsa', createBucket: false, deletes: false }) as { Statement: { Action: string[] }[] }).Statement.flatMap((s) => s.Action);
  assert.ok(!actions.includes('s3:DeleteObject'), actions.join(', '));
  assert.ok(actions.includes('s3:AbortMultipartUpload'));
});
