import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { allServicesRunningAtEnd, findOverlaps, quiesceIntervals } from '../../src/sim/audit.ts';
import { slowDumpFleet, startFleetHarness, waitFor, type FleetHarness } from '../support/fleet.ts';
import { RedisSentinel, RedisServer } from '../support/redis-server.ts';

const group = 'vcsa-ha';

/**
 * Redis Sentinel: a primary, a replica and three sentinels (Debian's redis-server, the second
 * in sentinel mode). The fleet reaches Redis only through the sentinels (redis.sentinels,
 * redis.name). The primary is SIGKILLed while an appliance is quiesced; the sentinels promote
 * the replica. With no replica left, lease writes cannot be acknowledged (redis.leaseReplicas
 * defaults to 1 with sentinels), so holders give their leases up and nothing new stops until
 * the old primary, restarted, has rejoined as the new primary's replica. Through all of it:
 * never two appliances quiesced, every appliance backed up, services running, same workers.
 */
void describe('Redis Sentinel failover mid-run', () => {
  let redisDir: string;
  let primary: RedisServer;
  let replica: RedisServer;
  const sentinels: RedisSentinel[] = [];
  const probes: Redis[] = [];
  let h: FleetHarness;
  const targets = ['vc01', 'vc02', 'vc03'];

  const probe = (port: number): Redis => {
    const r = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, retryStrategy: () => 200 });
    r.on('error', () => undefined);
    probes.push(r);
    return r;
  };
  const primaryPort = async (sentinel: Redis): Promise<number> => Number(((await sentinel.call('SENTINEL', 'get-master-addr-by-name', group)) as string[])[1]);

  before(async () => {
    redisDir = await mkdtemp(join(tmpdir(), 'redis-sentinel-'));
    primary = await RedisServer.create(redisDir);
    replica = await RedisServer.create(redisDir, { args: ['--replicaof', '127.0.0.1', String(primary.port)] });
    const onReplica = probe(replica.port);
    await waitFor('the replica to sync', async () => (await onReplica.info('replication')).includes('master_link_status:up'));
    // Down after 3 s without an answer: on a loaded CI machine a shorter time makes the sentinels
    // fail over on their own before the test kills anything.
    for (let i = 0; i < 3; i++) sentinels.push(await RedisSentinel.create(redisDir, group, primary.port, { downAfterMs: 3000, failoverTimeoutMs: 10_000 }));
    // A failover needs a quorum of sentinels that know each other and the replica.
    for (const s of sentinels) {
      const r = probe(s.port);
      await waitFor('the sentinels to find each other and the replica', async () => {
        const peers = (await r.call('SENTINEL', 'sentinels', group)) as unknown[];
        const replicas = (await r.call('SENTINEL', 'replicas', group)) as unknown[];
        return peers.length === 2 && replicas.length === 1;
      }, 30_000, 200);
    }
    const slow = slowDumpFleet(1);
    const sentinelList = sentinels.map((s) => ({ host: '127.0.0.1', port: s.port }));
    h = await startFleetHarness({
      count: targets.length,
      workers: 2,
      // The url gives only the scheme (and user, password, db): the sentinels name the primary.
      redisUrl: 'redis://127.0.0.1',
      redisOptions: { sentinels: sentinelList, name: group },
      tune: {
        redis: { sentinels: sentinelList, name: group, unreachableSeconds: 60 },
        // A lease and job locks that outlast the failover itself (a few seconds), not the wait for a replica.
        quiesce: { leaseSeconds: 6 },
        worker: { lockSeconds: 10, stalledIntervalSeconds: 5 },
      },
      edit: slow.edit,
    });
    // Each dump takes a second, so the failover lands while an appliance is quiesced.
    await slow.install(h.dir);
  });
  after(async () => {
    await h?.close();
    for (const p of probes) p.disconnect();
    for (const s of sentinels) await s.shutdown();
    await replica?.shutdown();
    await primary?.shutdown();
    await rm(redisDir, { recursive: true, force: true });
  });

  void test('primary SIGKILLed mid-run: the replica takes over, the workers follow, invariants hold', async (t) => {
    const sentinel = probe(sentinels[0]!.port);
    assert.equal(await primaryPort(sentinel), primary.port);
    const t0 = Date.now();
    const run = h.cli(['run', '--wait', '--json'], {}, 240_000);
    await waitFor('an appliance to be quiesced', async () => (await h.audit()).some((e) => e.ts >= t0 && e.state === 'stopped'), 60_000);
    const killedAt = Date.now();
    await primary.kill();
    await waitFor('the sentinels to promote the replica', async () => (await primaryPort(sentinel).catch(() => 0)) === replica.port, 30_000, 200);
    const promotedAt = Date.now();
    // The old primary comes back as the new one's replica (the sentinels would convert it too,
    // within their 10 s INFO period), and lease writes are acknowledged again.
    await primary.start(['--replicaof', '127.0.0.1', String(replica.port)]);
    const rejoined = probe(primary.port);
    await waitFor('the old primary to rejoin as a replica', async () => {
      const info = await rejoined.info('replication').catch(() => '');
      return info.includes('role:slave') && info.includes(`master_port:${replica.port}`) && info.includes('master_link_status:up');
    }, 60_000, 200);
    const rejoinedAt = Date.now();

    const res = await run;
    assert.equal(res.code, 0, res.stderr);
    const doc = JSON.parse(res.stdout) as { backups: { target: string }[]; failures: { target: string; code: string }[] };
    assert.deepEqual(doc.failures, []);
    assert.deepEqual(doc.backups.map((b) => b.target).sort(), targets);

    const audit = await h.audit();
    const intervals = quiesceIntervals(audit).filter((i) => i.from >= t0);
    assert.deepEqual(findOverlaps(intervals), [], 'two appliances quiesced at the same instant');
    assert.ok(allServicesRunningAtEnd(audit));
    for (const a of h.fleet.appliances) assert.ok(await a.servicesRunning(), `${a.name} running`);
    assert.ok(intervals.some((i) => i.from <= killedAt && (i.to ?? Infinity) >= killedAt), 'no appliance was quiesced when the primary died');
    // The same worker processes finished the run, on the new primary.
    assert.ok(h.workers.every((w) => w.alive()));
    assert.equal(await primaryPort(sentinel), replica.port);
    const status = await h.cli(['status', '--json']);
    assert.equal(status.code, 0, status.stderr);
    const st = JSON.parse(status.stdout) as { targets: { name: string; lastSuccess: { at: string } | null }[]; lease: unknown[] };
    for (const x of st.targets) assert.ok(x.lastSuccess, `${x.name} has a last success`);
    assert.deepEqual(st.lease, [], 'no fleet slot left taken');
    const logs = h.workers.map((w) => w.log()).join('');
    t.diagnostic(
      `failover ${promotedAt - killedAt} ms, old primary rejoined ${rejoinedAt - promotedAt} ms later; run done ${Date.now() - rejoinedAt} ms after; ` +
        `quiesces ${intervals.length}; leases given up ${(logs.match(/fleet lease (lost|not renewed)/g) ?? []).length}, unacknowledged ${(logs.match(/not acknowledged by enough Redis replicas/g) ?? []).length}`,
    );
  });
});
