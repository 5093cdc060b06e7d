import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { allServicesRunningAtEnd, findOverlaps, quiesceIntervals } from '../../src/sim/audit.ts';
import { enqueueBackups, waitForJobs, type JobOutcome } from '../../workers/producer.ts';
import { freePort, startFleetHarness, waitFor, writeSlowPgBin, type FleetHarness } from '../support/fleet.ts';

/** A private redis-server with an append-only file, so its data survives a restart as in production. */
class PrivateRedis {
  #child: ChildProcess | undefined;
  constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.#child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--dir', this.dir], { stdio: 'ignore' });
    const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined);
    try {
      await waitFor('redis-server to accept connections', async () => {
        try {
          if (probe.status !== 'ready') await probe.connect();
          return (await probe.ping()) === 'PONG';
        } catch {
          probe.disconnect();
          return false;
        }
      }, 10_000);
    } finally {
      probe.disconnect();
    }
  }

  /** SHUTDOWN: the append-only file is flushed, then the server exits. */
  async shutdown(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }
}

/**
 * Redis restarted while the fleet is mid-run: workers reconnect, every backup completes and
 * the invariants hold (the audit log shows no overlap, every service running at the end).
 */
void describe('Redis restarted mid-run', () => {
  let redisDir: string;
  let server: PrivateRedis;
  let h: FleetHarness;
  const targets = ['vc01', 'vc02', 'vc03'];

  before(async () => {
    redisDir = await mkdtemp(join(tmpdir(), 'redis-restart-'));
    server = new PrivateRedis(await freePort(), redisDir);
    await server.start();
    const real = new Map<string, string>();
    h = await startFleetHarness({
      count: 3,
      workers: 2,
      redisUrl: server.url,
      edit: (raw, dir) => {
        for (const t of raw['targets'] as { name: string; variables: Record<string, string> }[]) {
          real.set(t.name, `${t.variables['ROOT']}/opt/vmware/vpostgres/1.0/bin`);
          t.variables['VPG_BIN'] = join(dir, `slow-${t.name}`, 'slow-vpg-bin');
        }
      },
    });
    // Dumps take a second, so the restart lands while backups are in flight.
    const flag = join(h.dir, 'slow-dump');
    await writeFile(flag, '');
    for (const [name, bin] of real) await writeSlowPgBin(join(h.dir, `slow-${name}`), bin, flag, 1);
  });
  after(async () => {
    await h?.close();
    await server?.shutdown();
    await rm(redisDir, { recursive: true, force: true });
  });

  void test('workers reconnect, the run completes, invariants held', async (t) => {
    const config = h.config();
    const t0 = Date.now();
    const jobs = await enqueueBackups(config, h.redis, targets, `r${t0}`);

    await waitFor('an appliance to be quiesced', async () => (await h.audit()).some((e) => e.ts >= t0 && e.state === 'stopped'), 30_000);
    const downAt = Date.now();
    await server.shutdown();
    await new Promise((r) => setTimeout(r, 500));
    await server.start();
    const upAt = Date.now();

    // The waiter's connection reconnects on its own; should a call still fail, follow again.
    let outcomes: JobOutcome[] | undefined;
    for (let attempt = 1; !outcomes; attempt++) {
      try {
        outcomes = await waitForJobs(config, h.redis, jobs, { pollMs: 250 });
      } catch (err) {
        if (attempt >= 5) throw err;
      }
    }
    assert.deepEqual(
      outcomes.map((o) => [o.target, o.ok]).sort(),
      targets.map((t) => [t, true]),
      JSON.stringify(outcomes),
    );

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
});
