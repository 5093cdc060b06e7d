import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { FleetLease, type LeaseEntry } from '../../src/locks/fleet-lease.ts';
import { silentLogger } from '../../src/log.ts';
import { rejectsWithCode, waitFor } from '../support/poll.ts';
import { RedisServer } from '../support/redis-server.ts';

/**
 * The fleet lease across a failover that loses the last writes (asynchronous replication), on a
 * real primary and replica: a paused replica (SIGSTOP) acknowledges nothing; a replica whose
 * link broke, promoted after the primary was killed, lacks what it had not received.
 */
void describe('fleet lease with a replica (redis.leaseReplicas)', () => {
  let dir: string;
  let primary: RedisServer;
  let replica: RedisServer;
  const clients: Redis[] = [];
  const prefix = `test-lease-ha-${randomBytes(4).toString('hex')}`;
  const connect = (server: RedisServer): Redis => {
    const r = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => null });
    r.on('error', () => undefined);
    clients.push(r);
    return r;
  };
  const lease = (redis: Redis, holderId: string, leaseMs: number): FleetLease =>
    new FleetLease(redis, { prefix, maxConcurrent: 1, leaseMs, holderId, logger: silentLogger, replicas: 1 });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lease-failover-'));
    primary = await RedisServer.create(dir);
    replica = await RedisServer.create(dir, { args: ['--replicaof', '127.0.0.1', String(primary.port)] });
    const r = connect(replica);
    await waitFor('the replica to sync', async () => (await r.info('replication')).includes('master_link_status:up'));
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await replica?.shutdown();
    await primary?.shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  void test('an acquisition no replica acknowledges is withdrawn: nothing held, LEASE_TIMEOUT names redis.leaseReplicas', async () => {
    const redis = connect(primary);
    const l = lease(redis, 'worker-a', 3000);
    replica.pause();
    try {
      assert.equal(await l.tryAcquire('vc01'), null);
      assert.deepEqual(await l.holders(), [], 'the unacknowledged entry was withdrawn');
      const err = await rejectsWithCode(l.acquire('vc01', { waitMs: 1200, pollMs: 200 }), 'LEASE_TIMEOUT');
      assert.match(err.message, /redis\.leaseReplicas/);
    } finally {
      replica.resume();
    }
    const handle = await l.acquire('vc01', { waitMs: 10_000 });
    await handle.guard.assertHeld('stop');
    await handle.release();
  });

  void test('renewals the replica never got: the holder gives the lease up before the promoted replica shows it expired', async () => {
    const leaseMs = 3000;
    const onPrimary = connect(primary);
    const holder = lease(onPrimary, 'worker-a', leaseMs);
    const handle = await holder.acquire('vc02', { waitMs: 10_000 });
    await handle.guard.assertHeld('stop');

    // The replication link breaks (the replica follows a primary that is not there): renewals
    // still succeed on the primary, unacknowledged, and never reach the replica.
    const onReplica = connect(replica);
    await onReplica.replicaof('127.0.0.1', 1);
    await waitFor('the holder to give the lease up', () => handle.lost(), leaseMs * 3);
    await rejectsWithCode(handle.guard.assertHeld('dump'), 'LEASE_LOST');
    const heldUntil = handle.heldUntil();
    // ...while the primary still shows the entry held and unexpired (it was renewed there).
    const [onOld] = await holder.holders();
    assert.ok(onOld && onOld.token === handle.token && onOld.expiresAt > (await holder.redisNow()), 'the primary still holds the renewed lease');

    // Failover that loses the renewals: the primary dies, the stale replica is promoted.
    await primary.kill();
    const promoted = onReplica;
    await promoted.replicaof('NO', 'ONE');
    const [entry] = Object.values(await promoted.hgetall(`${prefix}:lease:holders`)).map((raw) => JSON.parse(raw) as LeaseEntry);
    assert.ok(entry, 'the acquisition (acknowledged) survived the failover');
    assert.equal(entry.token, handle.token);
    assert.ok(entry.expiresAt < onOld.expiresAt, 'the promoted copy lacks the last renewals');
    // A watchdog on the new primary may rescue from entry.expiresAt on; the holder had stopped
    // trusting its lease by then (both clocks are this machine's).
    assert.ok(heldUntil <= entry.expiresAt, `the holder counted on its lease until ${heldUntil}, the promoted copy expires at ${entry.expiresAt}`);
    assert.ok(entry.expiresAt - heldUntil < leaseMs, 'the holder gave up at most one lease early');
    await handle.release().catch(() => undefined);
  });
});
