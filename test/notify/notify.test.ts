import { rename } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Secret } from '../../src/config/secret.ts';
import { silentLogger } from '../../src/log.ts';
import type { Notification } from '../../src/notify/notification.ts';
import { createNotifier, Notifier } from '../../src/notify/notifier.ts';
import { webhookSender } from '../../src/notify/webhook.ts';
import { FleetState } from '../../src/state/fleet-state.ts';
import type { JobOutcome } from '../../workers/producer.ts';
import { startTestFleet, uniqueSuffix, type TestFleet } from '../web/fleet-fixture.ts';

/** A webhook receiver on loopback that records every body; `hang` never answers. */
interface Receiver {
  readonly url: string;
  readonly received: { path: string; body: unknown }[];
  waitFor(what: string, pred: (bodies: unknown[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

async function startReceiver(options: { hang?: boolean } = {}): Promise<Receiver> {
  const received: { path: string; body: unknown }[] = [];
  const waiters = new Set<() => void>();
  const server: Server = createServer((req, res) => {
    let text = '';
    req.on('data', (b: Buffer) => (text += b.toString('utf8')));
    req.on('end', () => {
      received.push({ path: req.url ?? '', body: JSON.parse(text) as unknown });
      for (const w of waiters) w();
      if (!options.hang) res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/hooks/T000/secret-path`,
    received,
    waitFor: (what, pred, timeoutMs = 15_000) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (!pred(received.map((r) => r.body))) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`webhook receiver: timed out waiting for ${what}; got ${JSON.stringify(received.map((r) => r.body))}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function closedPortUrl(): Promise<string> {
  const r = await startReceiver();
  await r.close();
  return r.url;
}

const kinds = (bodies: unknown[]): string[] => bodies.map((b) => `${(b as Notification).kind} ${(b as Notification).target}`);

void describe('notifications', { timeout: 90_000 }, () => {
  let t: TestFleet;
  let receiver: Receiver;

  before(async () => {
    receiver = await startReceiver();
    t = await startTestFleet({
      count: 2,
      name: 'notify',
      // No rate limit here: what keeps N workers to one notification must be the Redis markers.
      tune: (raw) => {
        raw['notify'] = { webhook: { url: receiver.url, format: 'json', timeoutSeconds: 2, minIntervalSeconds: 0 }, staleHours: 26, checkIntervalSeconds: 0.3 };
      },
    });
  });

  after(async () => {
    await t?.cleanup();
    await receiver?.close();
  });

  const pgDump = (name: string): string => join(t.fleet.appliances.find((a) => a.name === name)!.variables.ROOT, 'opt', 'vmware', 'vpostgres', '1.0', 'bin', 'pg_dump');

  void test('two workers send exactly one failure, one stale alert and one recovery', async () => {
    // vc02's last good backup is 30 h old (as if the workers had been down since).
    const state = new FleetState(t.redis, t.config.redis.prefix);
    const oldAt = new Date(Date.now() - 30 * 3600_000).toISOString();
    await state.recordSuccess('vc02', { id: '20200101T000000.000Z', at: oldAt, manifestKey: 'x', bytes: 1, rawBytes: 1, quiesceMs: 1, durationMs: 1 });
    t.startWorker();
    t.startWorker();

    // vc01 breaks on the appliance: pg_dump is gone.
    await rename(pgDump('vc01'), `${pgDump('vc01')}.away`);
    const [broken] = await t.backUp(['vc01']);
    assert.equal(broken?.ok, false);
    await receiver.waitFor('the failure', (b) => kinds(b).includes('failure vc01'));
    const failure = receiver.received.find((r) => (r.body as Notification).kind === 'failure')!.body as Notification;
    assert.equal(failure.code, 'COMMAND_FAILED');
    assert.match(failure.message ?? '', /pg_dump: No such file or directory/);
    assert.equal((failure as unknown as { source: string }).source, 'vcsa-backup');
    assert.equal(receiver.received[0]?.path, '/hooks/T000/secret-path');

    await receiver.waitFor('the stale alert', (b) => kinds(b).includes('stale vc02'));
    const stale = receiver.received.find((r) => (r.body as Notification).kind === 'stale')!.body as Notification;
    assert.equal(stale.lastSuccessAt, oldAt);
    assert.equal(stale.staleHours, 26);
    // A third notifier (another worker) checking now finds it already sent.
    const other = createNotifier(t.config, t.redis, silentLogger)!;
    assert.deepEqual(await other.checkStale(['vc01', 'vc02']), []);

    // Fixed: the next backup recovers; the one after is just a backup.
    await rename(`${pgDump('vc01')}.away`, pgDump('vc01'));
    const [fixed] = await t.backUp(['vc01']);
    assert.equal(fixed?.ok, true, JSON.stringify(fixed));
    await receiver.waitFor('the recovery', (b) => kinds(b).includes('recovery vc01'));
    const [again] = await t.backUp(['vc01']);
    assert.equal(again?.ok, true);
    const recovery = receiver.received.find((r) => (r.body as Notification).kind === 'recovery')!.body as Notification;
    assert.equal(recovery.backupId, fixed.ok ? fixed.result.id : '');

    // Several stale-check intervals have passed on both workers by now.
    assert.deepEqual(kinds(receiver.received.map((r) => r.body)).sort(), ['failure vc01', 'recovery vc01', 'stale vc02']);
  });

  void test('a dead or hanging webhook changes no backup outcome', async () => {
    const hanging = await startReceiver({ hang: true });
    try {
      for (const [name, url] of [['dead', await closedPortUrl()], ['hanging', hanging.url]] as const) {
        const config = await t.configVariant(name, (raw) => {
          raw['notify'] = { webhook: { url, timeoutSeconds: 1, minIntervalSeconds: 0 } };
        });
        t.startWorker(config);
        await rename(pgDump('vc01'), `${pgDump('vc01')}.away`);
        let outcomes: JobOutcome[];
        try {
          outcomes = await t.backUp(['vc01', 'vc02'], config);
        } finally {
          await rename(`${pgDump('vc01')}.away`, pgDump('vc01'));
        }
        const byTarget = new Map(outcomes.map((o) => [o.target, o]));
        assert.equal(byTarget.get('vc02')?.ok, true, `${name}: vc02 backed up: ${JSON.stringify(byTarget.get('vc02'))}`);
        assert.equal(byTarget.get('vc01')?.ok, false);
        // The fleet state, not the job's failedReason: waitForJobs can read a job just before it fails.
        const fleetState = new FleetState(t.redis, config.redis.prefix);
        const failed = await fleetState.get('vc01');
        assert.equal(failed.lastFailure?.code, 'COMMAND_FAILED', `${name}: vc01 fails for its own reason, not the webhook's: ${JSON.stringify(failed.lastFailure)}`);
        assert.equal(failed.failures, 1);
        assert.equal((await fleetState.get('vc02')).successes, 1);
      }
      assert.ok(hanging.received.length >= 1, 'the hanging receiver was called');
    } finally {
      await hanging.close();
    }
  });

  void test('slack format, rate limit per target and kind, and send errors that never name the URL', async () => {
    const r = await startReceiver();
    try {
      const send = webhookSender({ url: new Secret(r.url, 'test'), format: 'slack', timeoutMs: 2000 });
      const prefix = `notify-unit-${uniqueSuffix()}`;
      const notifier = new Notifier({ redis: t.redis, prefix, send, minIntervalSeconds: 60, staleHours: 26, logger: silentLogger });
      try {
        await notifier.backupFailed('vcA', { at: new Date().toISOString(), code: 'X', message: 'first' });
        await notifier.backupFailed('vcA', { at: new Date().toISOString(), code: 'X', message: 'second, rate-limited' });
        await notifier.backupFailed('vcB', { at: new Date().toISOString(), code: 'X', message: 'other target' });
        await notifier.backupSucceeded('vcA', { id: 'b1', at: new Date().toISOString() });
        await notifier.backupSucceeded('vcA', { id: 'b2', at: new Date().toISOString() });
        await notifier.backupSucceeded('vcC', { id: 'b3', at: new Date().toISOString() });
        const texts = r.received.map((x) => x.body as { text: string });
        assert.equal(texts.length, 3, JSON.stringify(texts));
        for (const x of texts) assert.deepEqual(Object.keys(x), ['text']);
        assert.match(texts[0]!.text, /backup of vcA FAILED \(X\): first/);
        assert.match(texts[1]!.text, /vcB FAILED/);
        assert.match(texts[2]!.text, /vcA recovered: backup b1/);
      } finally {
        const keys = await t.redis.keys(`${prefix}:*`);
        if (keys.length > 0) await t.redis.del(...keys);
      }

      const deadUrl = await closedPortUrl();
      const dead = webhookSender({ url: new Secret(deadUrl, 'env HOOK'), format: 'json', timeoutMs: 1000 });
      const err = await dead({ kind: 'failure', target: 'x', at: '', text: '' }).then(() => null, (e: unknown) => e as Error & { code: string });
      assert.equal(err?.code, 'WEBHOOK_FAILED');
      assert.doesNotMatch(err.message, /secret-path/);
      assert.match(err.message, /env HOOK/);
    } finally {
      await r.close();
    }
  });
});
