import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatReport, runSoak } from '../../soak/soak.ts';

/**
 * The short soak: 8 simulated appliances and 3 workers for about half a minute (at least one whole run) of overlapping faults
 * (worker SIGKILL and SIGSTOP, Redis restart, S3 500/503/SlowDown/reset/stall/corruption, spool
 * full, a hanging dump). The invariants are checked by the soak itself; a fixed seed keeps the
 * fault schedule the same from run to run (the timing of the fleet still varies).
 */
void test('short soak: overlapping faults, invariants hold', async (t) => {
  const report = await runSoak({ seconds: 30, appliances: 8, workers: 3, seed: 1414, drills: 2, faultEverySeconds: 3, log: (line) => t.diagnostic(line) });
  t.diagnostic(formatReport(report));
  assert.deepEqual(report.violations, []);
  assert.ok(report.runs.length >= 1);
  assert.ok(report.faults.length >= 5, `only ${report.faults.length} faults injected`);
  assert.ok(report.figures.backupsCompleted >= 1);
  assert.ok(report.figures.drills.length >= 1 && report.figures.drills.every((d) => d.ok));
});
