import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { allServicesRunningAtEnd, findOverlaps, quiesceIntervals } from '../../src/sim/audit.ts';
import { slowDumpFleet, startFleetHarness, waitFor, type FleetHarness } from '../support/fleet.ts';
import { RedisServer } from '../support/redis-server.ts';

/**
 * Redis restarted while the fleet is mid-run: workers reconnect, every backup completes and
 * the invariants hold (the audit log shows no overlap, every service running at the end).
 */
void describe('Redis restarted mid-run', () => {
  let redisDir: string;
  let server: RedisServer;
  let h: FleetHarness;
  const targets = ['vc01', 'vc02', 'vc03'];

  before(async () => {
    redisDir = await mkdtemp(join(tmpdir(), 'redis-restart-'));
    server = await RedisServer.create(redisDir);
    const slow = slowDumpFleet(1);
    h = await startFleetHarness({
      count: 3,
      workers: 2,
      redisUrl: server.url,
      // Long enough for the restart below; the give-up test shortens it.
      tune: { redis: { unreachableSeconds: 60 } },
      edit: slow.edit,
    });
    // Dumps take a second, so the restart lands while backups are in flight.
    await slow.install(h.dir);
  });
  after(async () => {
    await h?.close();
    await server?.shutdown();
    await rm(redisDir, { recursive: true, force: true });
  });

  void test('workers and `run --wait` / `status` reconnect, the run completes, invariants held, no exit 13', async (t) => {
    const t0 = Date.now();
    // As cron runs it: the command follows the run through the restart and reports success.
    const run = h.cli(['run', '--wait', '--json'], {}, 180_000);
    await waitFor('an appliance to be quiesced', async () => (await h.audit()).some((e) => e.ts >= t0 && e.state === 'stopped'));
    const downAt = Date.now();
    await server.shutdown();
    // A command started while Redis is away waits for it (bounded) instead of failing.
    const status = h.cli(['status', '--json'], {}, 120_000);
    await server.start();
    const upAt = Date.now();

    const res = await run;
    assert.equal(res.code, 0, res.stderr);
    const doc = JSON.parse(res.stdout) as { backups: { target: string }[]; failures: unknown[] };
    assert.deepEqual(doc.failures, []);
    assert.deepEqual(doc.backups.map((b) => b.target).sort(), targets);
    const st = await status;
    assert.equal(st.code, 0, st.stderr);
    assert.deepEqual((JSON.parse(st.stdout) as { targets: { name: string }[] }).targets.map((x) => x.name), targets);

    const audit = await h.audit();
    const intervals = quiesceIntervals(audit).filter((i) => i.from >= t0);
    assert.deepEqual(findOverlaps(intervals), [], 'two appliances quiesced at the same instant');
    assert.ok(allServicesRunningAtEnd(audit));
    for (const a of h.fleet.appliances) assert.ok(await a.servicesRunning(), `${a.name} running`);
    // Redis really went away while an appliance was being backed up.
    assert.ok(intervals.some((i) => i.from <= downAt && (i.to ?? Infinity) >= downAt), 'no appliance was quiesced when Redis went down');
    t.diagnostic(`Redis down for ${upAt - downAt} ms; run finished ${Date.now() - upAt} ms after it came back`);
    // The same worker processes finished the run: they reconnected rather than died.
    assert.ok(h.workers.every((w) => w.alive()));
  });

  void test('Redis that stays away: `run --wait` gives up after redis.unreachableSeconds with REDIS_UNREACHABLE (exit 1, not 13)', async () => {
    await h.editConfig((raw) => {
      raw['redis'] = { ...(raw['redis'] as object), unreachableSeconds: 2 };
    });
    const t0 = Date.now();
    const run = h.cli(['run', '--wait', '--json', '--target', 'vc01'], {}, 120_000);
    await waitFor('vc01 to be quiesced', async () => (await h.audit()).some((e) => e.ts >= t0 && e.appliance === 'vc01' && e.state === 'stopped'));
    await server.shutdown();
    try {
      const res = await run;
      assert.equal(res.code, 1, res.stderr);
      const doc = JSON.parse(res.stdout) as { error: { code: string; message: string } };
      assert.equal(doc.error.code, 'REDIS_UNREACHABLE', res.stdout);
      assert.match(doc.error.message, /redis\.unreachableSeconds \(2 s\)/);
    } finally {
      await server.start();
    }
    // The workers carried on: vc01's services came back and nothing is left quiesced.
    await waitFor('vc01 running again', () => h.fleet.appliances[0]!.servicesRunning(), 60_000);
  });
});
