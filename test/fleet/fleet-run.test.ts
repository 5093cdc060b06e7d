import assert from 'node:assert/strict';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { allServicesRunningAtEnd, findOverlaps, quiesceIntervals } from '../../src/sim/audit.ts';
import { startFleetHarness, type FleetHarness } from '../support/fleet.ts';
import { fleetCliInProcess } from '../support/fleet-cli.ts';

interface RunDoc {
  backups: { target: string; id: string; bucket: string; manifestKey: string; quiesceMs: number; artifacts: { name: string; key: string; bytes: number; sha256: string }[] }[];
  failures: { target: string; code: string; message: string }[];
}

interface StatusDoc {
  targets: { name: string; lastSuccess: { id: string; at: string } | null; lastFailure: { at: string; code: string; message: string } | null }[];
  lease: { target: string; holder: string; since: string }[];
}

/**
 * Issue 3: five appliances backed up by three worker processes (concurrency 2 each) through
 * `run --wait --json`; the audit log shows one appliance quiesced at a time. A sixth appliance
 * whose pg_dump fails shows up as a failure in `run` and `status`.
 */
void describe('fleet run: 3 workers, 5 appliances', () => {
  let h: FleetHarness;
  const good = ['vc01', 'vc02', 'vc03', 'vc04', 'vc05'];
  let run: RunDoc;

  before(async () => {
    h = await startFleetHarness({
      count: 6,
      workers: 3,
      tune: { worker: { attempts: 2 } },
      edit: (raw, dir) => {
        const t = (raw['targets'] as { name: string; variables: Record<string, string> }[]).find((x) => x.name === 'vc06');
        if (t) t.variables['VPG_BIN'] = join(dir, 'broken-vpg-bin');
      },
    });
    const broken = join(h.dir, 'broken-vpg-bin');
    await mkdir(broken, { recursive: true });
    await writeFile(join(broken, 'pg_dump'), '#!/bin/bash\necho "pg_dump: error: connection to server failed" >&2\nexit 1\n');
    await chmod(join(broken, 'pg_dump'), 0o755);
  });
  after(async () => {
    await h?.close();
  });

  void test('run --wait --json backs up every appliance, one quiesced at a time', async () => {
    const started = Date.now();
    const res = await fleetCliInProcess(h, ['run', ...good.flatMap((t) => ['--target', t]), '--wait', '--json']);
    assert.equal(res.code, 0, res.stderr);
    run = JSON.parse(res.stdout) as RunDoc;
    assert.deepEqual(run.failures, []);
    assert.deepEqual(run.backups.map((b) => b.target).sort(), good);
    for (const b of run.backups) {
      assert.equal(b.bucket, h.fleet.sim.s3.bucket);
      assert.match(b.manifestKey, new RegExp(`^vcsa/${b.target}/${b.id}/manifest\\.json$`));
      assert.ok(b.quiesceMs > 0);
      assert.deepEqual(b.artifacts.map((a) => a.name), ['vcdb', 'inventory']);
      for (const a of b.artifacts) {
        assert.ok(a.bytes > 0);
        assert.match(a.sha256, /^[0-9a-f]{64}$/);
        assert.ok(!a.key.includes(':'));
      }
    }

    const audit = await h.audit();
    const intervals = quiesceIntervals(audit).filter((i) => i.from >= started);
    assert.deepEqual(findOverlaps(intervals), [], 'two appliances were quiesced at the same instant');
    for (const t of good) assert.equal(intervals.filter((i) => i.appliance === t).length, 1, `${t} quiesced once`);
    assert.ok(allServicesRunningAtEnd(audit));
    for (const a of h.fleet.appliances) assert.ok(await a.servicesRunning(), `${a.name} services running`);
    // The work was spread: more than one worker process ran a backup.
    const ran = h.workers.filter((w) => w.log().includes('"backup committed"'));
    assert.ok(ran.length >= 2, `only ${ran.length} worker(s) committed backups`);
  });

  void test('run --wait --json reports a failing dump and exits 1', async () => {
    const res = await fleetCliInProcess(h, ['run', '--target', 'vc06', '--wait', '--json']);
    assert.equal(res.code, 1, res.stderr);
    const doc = JSON.parse(res.stdout) as RunDoc;
    assert.deepEqual(doc.backups, []);
    assert.equal(doc.failures.length, 1);
    assert.equal(doc.failures[0]?.target, 'vc06');
    assert.equal(doc.failures[0]?.code, 'COMMAND_FAILED');
    assert.match(doc.failures[0]?.message ?? '', /pg_dump: error: connection to server failed/);
    const vc06 = h.fleet.appliances.find((a) => a.name === 'vc06');
    assert.ok(await vc06?.servicesRunning());
    assert.deepEqual(findOverlaps(quiesceIntervals(await h.audit())), []);
  });

  void test('status --json: last success per target, the failure, an empty lease table', async () => {
    const res = await fleetCliInProcess(h, ['status', '--json']);
    assert.equal(res.code, 0, res.stderr);
    const doc = JSON.parse(res.stdout) as StatusDoc;
    assert.deepEqual(doc.lease, []);
    assert.deepEqual(doc.targets.map((t) => t.name), [...good, 'vc06']);
    for (const t of doc.targets) {
      if (t.name === 'vc06') {
        assert.equal(t.lastSuccess, null);
        assert.equal(t.lastFailure?.code, 'COMMAND_FAILED');
        assert.match(t.lastFailure?.message ?? '', /connection to server failed/);
        assert.ok(!Number.isNaN(Date.parse(t.lastFailure?.at ?? '')));
      } else {
        const b = run.backups.find((x) => x.target === t.name);
        assert.equal(t.lastSuccess?.id, b?.id);
        assert.ok(!Number.isNaN(Date.parse(t.lastSuccess?.at ?? '')));
        assert.equal(t.lastFailure, null);
      }
    }
  });
});
