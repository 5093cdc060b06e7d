import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  allServicesRunningAtEnd,
  auditReport,
  findOverlaps,
  maxConcurrentQuiesced,
  parseAudit,
  quiesceIntervals,
  readAudit,
  servicesLeftStopped,
  type AuditEntry,
} from '../../src/sim/audit.ts';

const vpxd = 'vmware-vpxd';
const inv = 'vmware-inventoryservice';
const e = (ts: number, appliance: string, service: string, state: 'stopped' | 'running'): AuditEntry => ({ ts, appliance, service, state });
/** One backup of an appliance: stop vpxd, stop inventory, start inventory, start vpxd. */
const backup = (appliance: string, from: number, to: number): AuditEntry[] => [
  e(from, appliance, vpxd, 'stopped'),
  e(from + 1, appliance, inv, 'stopped'),
  e(to - 1, appliance, inv, 'running'),
  e(to, appliance, vpxd, 'running'),
];

void describe('audit log analysis', () => {
  void test('one interval per quiesce, from the first stop to the last start', () => {
    const entries = [e(0, 'vc01', inv, 'running'), e(1, 'vc01', vpxd, 'running'), ...backup('vc01', 100, 200), ...backup('vc02', 300, 400)];
    assert.deepEqual(quiesceIntervals(entries), [
      { appliance: 'vc01', from: 100, to: 200, services: [vpxd, inv] },
      { appliance: 'vc02', from: 300, to: 400, services: [vpxd, inv] },
    ]);
    assert.deepEqual(findOverlaps(quiesceIntervals(entries)), []);
    assert.equal(maxConcurrentQuiesced(quiesceIntervals(entries)), 1);
    assert.equal(allServicesRunningAtEnd(entries), true);
  });

  void test('overlapping quiesces of two appliances are reported, touching ones are not', () => {
    const overlapping = [...backup('vc01', 100, 200), ...backup('vc02', 150, 250)];
    const found = findOverlaps(quiesceIntervals(overlapping));
    assert.equal(found.length, 1);
    assert.deepEqual([found[0]!.a.appliance, found[0]!.b.appliance], ['vc01', 'vc02']);
    assert.equal(maxConcurrentQuiesced(quiesceIntervals(overlapping)), 2);

    const touching = [...backup('vc01', 100, 200), ...backup('vc02', 200, 300)];
    assert.deepEqual(findOverlaps(quiesceIntervals(touching)), []);

    const nested = [...backup('vc01', 100, 500), ...backup('vc02', 200, 300), ...backup('vc03', 350, 400)];
    assert.equal(findOverlaps(quiesceIntervals(nested)).length, 2);
    assert.equal(maxConcurrentQuiesced(quiesceIntervals(nested)), 2);

    assert.equal(auditReport(touching).ok, true);
    assert.equal(auditReport(overlapping).ok, false);
    assert.equal(auditReport(overlapping, 2).ok, true, 'two at once is fine when maxConcurrent is 2');
    assert.equal(auditReport(nested, 2).overlaps.length, 2);
  });

  void test('the same appliance quiesced twice is not an overlap; lines are ordered by time, not by file order', () => {
    const entries = [...backup('vc01', 300, 400), ...backup('vc01', 100, 200)];
    assert.deepEqual(
      quiesceIntervals(entries).map((i) => [i.from, i.to]),
      [
        [100, 200],
        [300, 400],
      ],
    );
    assert.deepEqual(findOverlaps(quiesceIntervals(entries)), []);
  });

  void test('an appliance left with a service stopped has an open interval that overlaps everything after it', () => {
    const entries = [e(100, 'vc01', vpxd, 'stopped'), e(110, 'vc01', inv, 'stopped'), e(120, 'vc01', inv, 'running'), ...backup('vc02', 1000, 1100)];
    const intervals = quiesceIntervals(entries);
    assert.deepEqual(intervals[0], { appliance: 'vc01', from: 100, to: null, services: [vpxd, inv] });
    assert.equal(findOverlaps(intervals).length, 1);
    assert.equal(allServicesRunningAtEnd(entries), false);
    assert.deepEqual(servicesLeftStopped(entries), [{ appliance: 'vc01', service: vpxd }]);
  });

  void test('readAudit parses the log, a missing log is empty, a broken line names its line number', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sim-audit-'));
    try {
      const path = join(dir, 'audit.jsonl');
      assert.deepEqual(await readAudit(path), []);
      await writeFile(path, '{"ts": 5, "appliance": "vc01", "service": "vmware-vpxd", "state": "stopped"}\n');
      assert.deepEqual(await readAudit(path), [e(5, 'vc01', vpxd, 'stopped')]);
      await writeFile(path, '{"ts": 5, "appliance": "vc01", "service": "vmware-vpxd", "state": "stopped"}\n{"ts": 6, "appliance": "vc01"\n');
      await assert.rejects(readAudit(path), /audit\.jsonl:2: not a JSON line/);
      assert.throws(() => parseAudit('{"ts": "5", "appliance": "vc01", "service": "x", "state": "stopped"}'), /:1: expected/);
      assert.throws(() => parseAudit('{"ts": 5, "appliance": "vc01", "service": "x", "state": "paused"}'), /:1: expected/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
