import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { FleetLease } from '../../src/locks/fleet-lease.ts';
import { acquireTargetLock } from '../../src/locks/target-lock.ts';
import { silentLogger } from '../../src/log.ts';
import { waitFor } from '../support/poll.ts';

/** The fleet lease's own semantics against a real Redis (the fleet tests exercise it through workers). */
void describe('fleet lease', () => {
  let redis: Redis;
  const prefix = `test-lease-${randomBytes(4).toString('hex')}`;
  const lease = (maxConcurrent: number, leaseMs: number, holderId: string): FleetLease =>
    new FleetLease(redis, { prefix, maxConcurrent, leaseMs, holderId, logger: silentLogger });

  before(() => {
    redis = new Redis('redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
  });
  after(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  void test('at most maxConcurrent holders; a waiter wakes on release, not on its poll interval', async () => {
    const a = lease(2, 10_000, 'a');
    const b = lease(2, 10_000, 'b');
    const c = lease(2, 10_000, 'c');
    const h1 = await a.acquire('vc1', { waitMs: 1000 });
    const h2 = await b.acquire('vc2', { waitMs: 1000 });
    assert.equal(await c.tryAcquire('vc3'), null, 'a third appliance must wait');
    assert.equal(await c.tryAcquire('vc1'), null, 'one entry per appliance');
    assert.ok(h2.token > h1.token, 'fence tokens increase');

    const waiting = c.acquire('vc3', { waitMs: 120_000, pollMs: 120_000 });
    await h1.release();
    const woke = await Promise.race([waiting, delay(10_000).then(() => null)]);
    assert.ok(woke, 'the waiter was not woken by the release');
    assert.deepEqual((await c.holders()).map((e) => e.target).sort(), ['vc2', 'vc3']);
    await h2.release();
    await woke.release();
    assert.deepEqual(await c.holders(), []);
  });

  void test('an expired lease keeps its slot until a rescuer frees it; the old holder can neither act nor free it', async () => {
    const dead = lease(1, 300, 'dead-worker');
    const other = lease(1, 10_000, 'other-worker');
    const held = await dead.acquire('vc1', { waitMs: 1000 });
    await held.abandon('test: left to the watchdog'); // no more renewals, expired at once
    // Expired by Redis's clock, the one the lease is judged by.
    const entry = await waitFor('the abandoned lease to expire', async () => {
      const [e] = await other.holders();
      return e && e.expiresAt <= (await other.redisNow()) ? e : undefined;
    });
    await assert.rejects(held.guard.assertHeld('dump'), { code: 'LEASE_LOST' });
    assert.equal(await other.tryAcquire('vc2'), null, 'an expired entry still occupies the slot');

    assert.equal(await other.claimExpired(entry, 'rescuer-1', 5000), true);
    assert.equal(await other.claimExpired(entry, 'rescuer-2', 5000), false, 'one rescuer at a time');
    await held.release(); // a late release by the dead holder frees nothing while rescued
    assert.equal((await other.holders()).length, 1);
    assert.equal(await other.freeRescued(entry, 'rescuer-1'), true);

    const next = await other.acquire('vc2', { waitMs: 1000 });
    assert.ok(next.token > held.token);
    await held.release(); // stale token: must not free vc2's slot
    assert.deepEqual((await other.holders()).map((e) => e.target), ['vc2']);
    await next.release();
  });

  void test('renewal keeps a lease alive well past its length; waiting gives up with LEASE_TIMEOUT', async () => {
    const a = lease(1, 400, 'a');
    const h = await a.acquire('vc1', { waitMs: 1000 });
    const [first] = await a.holders();
    assert.ok(first);
    // Renewed until it reaches well past its length (by Redis's clock), rather than a guessed sleep.
    await waitFor('the lease to be renewed past three lengths', async () => ((await a.holders())[0]?.expiresAt ?? 0) > first.expiresAt + 1200);
    await h.guard.assertHeld('dump');
    assert.equal(h.lost(), false);
    await assert.rejects(lease(1, 400, 'b').acquire('vc2', { waitMs: 300, pollMs: 100 }), { code: 'LEASE_TIMEOUT' });
    await h.release();
  });

  void test('target lock: one holder; a waiter gets it when released; TARGET_BUSY names the holder', async () => {
    const opts = { prefix, target: 'vc1', ttlMs: 5000, logger: silentLogger, purpose: 'backup' as const };
    const first = await acquireTargetLock(redis, { ...opts, holder: 'worker-1' });
    await assert.rejects(acquireTargetLock(redis, { ...opts, holder: 'worker-2', purpose: 'restore' }), (err: { code?: string; message: string }) => {
      assert.equal(err.code, 'TARGET_BUSY');
      assert.match(err.message, /backup by worker-1/);
      return true;
    });
    const waiting = acquireTargetLock(redis, { ...opts, holder: 'worker-2', waitMs: 10_000 });
    await first.release();
    const second = await waiting;
    await first.release(); // not the holder any more: no effect
    await assert.rejects(acquireTargetLock(redis, { ...opts, holder: 'worker-3' }), { code: 'TARGET_BUSY' });
    await second.release();
  });
});
