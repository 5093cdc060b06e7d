import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { RunHistory, RunRecorder, runKey } from '../../src/state/run-history.ts';
import { runSpans, timeIn } from '../../src/state/run-spans.ts';
import { sizeDrop, sizeDrops } from '../../src/state/size-drop.ts';

const prefix = `test-runs-${randomBytes(4).toString('hex')}`;
const redis = new Redis(process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 2 });

after(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

void describe('run history', () => {
  void test('a recorder writes marks in order; spans and the quiesce window follow from them; indexes by start and end', async () => {
    let clock = 1_000_000;
    const now = (): number => clock;
    const rec = new RunRecorder(redis, prefix, { jobId: 'backup.vc01.r1', target: 'vc01', attempt: 1, maxAttempts: 3, trigger: 'run', holder: 'w1' }, now);
    void rec.begin();
    const steps: [Parameters<RunRecorder['mark']>[0], string | undefined, number][] = [
      ['lock', undefined, 0],
      ['precheck', undefined, 10],
      ['stop', undefined, 100],
      ['dump', 'vcdb', 150],
      ['dump', 'vcdb', 160],
      ['dump', 'inventory', 400],
      ['start', undefined, 500],
      ['compress', 'vcdb', 600],
      ['upload', 'vcdb', 700],
      ['upload-retry', undefined, 800],
      ['compress', 'vcdb', 900],
      ['upload', 'vcdb', 950],
      ['manifest', undefined, 1000],
    ];
    for (const [step, artifact, t] of steps) {
      clock = 1_000_000 + t;
      void rec.mark(step, artifact);
    }
    clock = 1_001_100;
    await rec.committed({ id: 'B1', committedAt: clock, bytes: 10, rawBytes: 100, durationMs: 1090, quiesce: { stoppedAt: 1_000_100, startedAt: 1_000_550 } });
    clock = 1_001_200;
    await rec.end('ok');

    const history = new RunHistory(redis, prefix);
    const run = await history.get('backup.vc01.r1#1');
    assert.ok(run);
    assert.equal(run.outcome, 'ok');
    assert.deepEqual(run.marks.map((m) => m.step), ['lock', 'precheck', 'stop', 'dump', 'dump', 'start', 'compress', 'upload', 'upload-retry', 'compress', 'upload', 'manifest'], 'a repeated mark is dropped');
    assert.ok((await redis.pttl(runKey(prefix, run.runId))) > 30 * 24 * 3600_000, 'kept for weeks, then expires');
    assert.deepEqual((await history.startedBetween(1_000_000, 1_000_001)).map((r) => r.runId), [run.runId]);
    assert.deepEqual(await history.startedBetween(1_000_001, 2_000_000), []);
    assert.deepEqual((await history.endedSince(1_001_200)).map((r) => r.runId), [run.runId]);
    assert.deepEqual(await history.endedSince(1_001_201), []);

    const spans = runSpans(run, 5_000_000);
    assert.deepEqual(spans.window, { start: 1_000_100, end: 1_000_550, open: false }, 'the manifest window wins');
    assert.equal(timeIn(spans, 'dump'), 350);
    assert.equal(timeIn(spans, 'upload'), 100 + 50);
    assert.equal(timeIn(spans, 'backoff'), 100);
    assert.equal(spans.steps.at(-1)?.end, 1_001_200, 'the last step ends with the run');

    // Without a committed backup (a failure mid-run), the window is stop → end of the start step.
    const { backup: _b, endedAt: _e, ...rest } = run;
    const failed = { ...rest, outcome: 'running' as const };
    const open = runSpans(failed, 1_002_000);
    assert.deepEqual(open.window, { start: 1_000_100, end: 1_000_600, open: false });
    assert.equal(open.steps.at(-1)?.open, true);
    assert.equal(open.end, 1_002_000);
  });

  void test('size drops: below the ratio of the one before', () => {
    const b = (id: string, bytes: number): { id: string; at: string; bytes: number; rawBytes: number } => ({ id, at: id, bytes, rawBytes: bytes * 10 });
    assert.equal(sizeDrop([b('3', 100), b('2', 100)], 0.5), null);
    assert.deepEqual(sizeDrop([b('3', 40), b('2', 100)], 0.5), { id: '3', bytes: 40, previousId: '2', previousBytes: 100, ratio: 0.4, threshold: 0.5 });
    assert.equal(sizeDrop([b('3', 40)], 0.5), null);
    assert.deepEqual([...sizeDrops([b('4', 100), b('3', 40), b('2', 100), b('1', 100)], 0.5).keys()], ['3']);
  });
});
