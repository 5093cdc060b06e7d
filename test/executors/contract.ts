/**
 * The contract every executor passes (see src/executors/executor.ts). Each executor's test file
 * calls `executorContract` with a factory for a working executor. The commands run on this
 * machine in every case (a child process, sshd on loopback, a local container), so the tests
 * look for leftover processes in /proc.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Executor } from '../../src/executors/executor.ts';
import { waitFor, rejectsWithCode } from '../support/poll.ts';

export interface ExecutorUnderTest {
  readonly executor: Executor;
  readonly cleanup: () => Promise<void>;
}

/** A sink that counts and hashes what it gets, and can be slow to prove backpressure works. */
export class CountingSink extends Writable {
  bytes = 0;
  maxBuffered = 0;
  readonly #hash = createHash('sha256');
  readonly #delayMs: number;

  constructor(options: { delayMs?: number; highWaterMark?: number } = {}) {
    super({ highWaterMark: options.highWaterMark ?? 64 * 1024 });
    this.#delayMs = options.delayMs ?? 0;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.bytes += chunk.length;
    this.#hash.update(chunk);
    this.maxBuffered = Math.max(this.maxBuffered, this.writableLength);
    if (this.#delayMs > 0) setTimeout(callback, this.#delayMs);
    else setImmediate(callback);
  }

  sha256(): string {
    return this.#hash.copy().digest('hex');
  }
}

/** What `seq 1 N` prints, hashed without holding it in memory. */
export function seqDigest(n: number): { bytes: number; sha256: string } {
  const hash = createHash('sha256');
  let bytes = 0;
  const batch: string[] = [];
  for (let i = 1; i <= n; i++) {
    batch.push(String(i));
    if (batch.length === 10000 || i === n) {
      const text = `${batch.join('\n')}\n`;
      hash.update(text);
      bytes += Buffer.byteLength(text);
      batch.length = 0;
    }
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** Pids on this machine whose command line contains `marker`. */
export async function processesWith(marker: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = (await readFile(`/proc/${entry}/cmdline`)).toString('utf8').replaceAll('\0', ' ');
      if (cmdline.includes(marker)) found.push(Number(entry));
    } catch {
      // gone while we looked
    }
  }
  return found;
}

export { waitFor, rejectsWithCode };


/** Far longer than any wait for a stopped command to be gone: gone means stopped, not finished. */
const uniqueSleepSeconds = 300;

/** A unique `sleep` whose process can be found in /proc: `sleep 300.<digits>`. */
function uniqueSleep(): string {
  return `sleep ${uniqueSleepSeconds}.${String(Math.floor(Math.random() * 1e9)).padStart(9, '1')}`;
}

export function executorContract(name: string, make: () => Promise<ExecutorUnderTest>): void {
  void describe(`executor contract: ${name}`, () => {
    let subject: ExecutorUnderTest;
    let executor: Executor;

    before(async () => {
      subject = await make();
      executor = subject.executor;
    });

    after(async () => {
      await executor.close();
      await subject.cleanup();
    });

    void test('collects stdout of a short command and reports exit code 0', async () => {
      const result = await executor.run('echo hello; printf world');
      assert.equal(result.stdout, 'hello\nworld');
      assert.equal(result.exitCode, 0);
      assert.ok(result.durationMs >= 0);
      assert.ok(executor.description.length > 0);
    });

    void test('runs the command with a POSIX shell (pipes, variables, subshells)', async () => {
      const result = await executor.run('X=abc; echo "$X" | tr a-c A-C; (exit 0) && echo ok');
      assert.equal(result.stdout, 'ABC\nok\n');
    });

    // 16 MB: several times both the 1 MiB a run collects and the 4 MiB backpressure bound below
    // (the product streams gigabytes the same way; the large-VCDB test takes 200 MiB through it).
    void test('streams 16 MB of stdout into a writable, byte-exact, without collecting it', async () => {
      const n = 2_200_000;
      const expected = seqDigest(n);
      assert.ok(expected.bytes > 16_000_000);
      const sink = new CountingSink();
      const result = await executor.run(`seq 1 ${n}`, { stdout: sink, timeoutMs: 120_000 });
      assert.equal(result.stdout, '');
      assert.equal(sink.bytes, expected.bytes);
      assert.equal(sink.sha256(), expected.sha256);
      assert.ok(sink.writableEnded, 'stdout is ended when the run settles');
      assert.ok(sink.maxBuffered <= 4 * 1024 * 1024, `backpressure: at most 4 MiB queued in the sink, saw ${sink.maxBuffered}`);
    });

    void test('a slow stdout consumer still gets every byte, and the command waits for it', async () => {
      const n = 400_000;
      const expected = seqDigest(n);
      const sink = new CountingSink({ delayMs: 3, highWaterMark: 16 * 1024 });
      await executor.run(`seq 1 ${n}`, { stdout: sink, timeoutMs: 60_000 });
      assert.equal(sink.bytes, expected.bytes);
      assert.equal(sink.sha256(), expected.sha256);
      assert.ok(sink.maxBuffered <= 1024 * 1024, `backpressure: at most 1 MiB queued in a slow sink, saw ${sink.maxBuffered}`);
    });

    void test('endStdout: false leaves the writable open after every byte was written', async () => {
      const sink = new CountingSink();
      await executor.run('printf abc', { stdout: sink, endStdout: false });
      assert.equal(sink.writableEnded, false);
      await executor.run('printf def', { stdout: sink, endStdout: false });
      assert.equal(sink.bytes, 6);
      sink.end();
    });

    void test('a failing command rejects with COMMAND_FAILED, its exit code and the stderr tail', async () => {
      const err = await rejectsWithCode(executor.run('printf "%s-%s\\n" to stdout; echo boom >&2; exit 3'), 'COMMAND_FAILED');
      assert.equal(err.details['exitCode'], 3);
      assert.match(err.message, /boom/);
      assert.doesNotMatch(err.message, /to-stdout/);
      assert.equal(err.permanent, false);
    });

    void test('stderr keeps only its last 8 KiB', async () => {
      const result = await executor.run('seq 1 30000 >&2; echo last-words >&2', { check: false });
      assert.equal(result.exitCode, 0);
      assert.ok(Buffer.byteLength(result.stderrTail) <= 8 * 1024, `tail is ${Buffer.byteLength(result.stderrTail)} bytes`);
      assert.match(result.stderrTail, /29999\n30000\nlast-words\n$/);
    });

    void test('check: false returns a non-zero exit code instead of rejecting', async () => {
      const result = await executor.run('echo oops >&2; exit 5', { check: false });
      assert.equal(result.exitCode, 5);
      assert.match(result.stderrTail, /oops/);
    });

    void test('a command that is not installed fails with exit 127 quoting "not found"', async () => {
      const err = await rejectsWithCode(executor.run('no-such-command-vcsa-backup-test'), 'COMMAND_FAILED');
      assert.equal(err.details['exitCode'], 127);
      assert.match(err.message, /not found/);
    });

    void test('a timeout kills the command and everything it started, and rejects with COMMAND_TIMEOUT', async () => {
      const first = uniqueSleep();
      const second = uniqueSleep();
      const started = Date.now();
      const err = await rejectsWithCode(executor.run(`${first} & ${second}; wait`, { timeoutMs: 300 }), 'COMMAND_TIMEOUT');
      // Well before the sleeps would end by themselves: the run gave up rather than waited.
      // (How much sooner depends on the machine's load: over ssh the kill is a new session.)
      assert.ok(Date.now() - started < uniqueSleepSeconds * 1000 / 2, `took ${Date.now() - started} ms to give up`);
      assert.match(err.message, /300 ms/);
      await waitFor('the timed-out processes to be gone', async () => (await processesWith(first)).length === 0 && (await processesWith(second)).length === 0);
    });

    void test('aborting the signal kills the command and rejects with ABORTED', async () => {
      const sleeper = uniqueSleep();
      const controller = new AbortController();
      const sink = new Writable({
        write(_chunk, _encoding, callback) {
          controller.abort(new Error('operator pressed stop'));
          callback();
        },
      });
      const err = await rejectsWithCode(executor.run(`echo started; ${sleeper}`, { stdout: sink, signal: controller.signal }), 'ABORTED');
      assert.match(err.message, /operator pressed stop/);
      await waitFor('the aborted process to be gone', async () => (await processesWith(sleeper)).length === 0);
    });

    void test('an already aborted signal rejects without running anything', async () => {
      const controller = new AbortController();
      controller.abort();
      await rejectsWithCode(executor.run('echo should-not-run', { signal: controller.signal }), 'ABORTED');
    });

    void test('a failing stdout destination stops the command and rejects with its error', async () => {
      const sleeper = uniqueSleep();
      const sink = new Writable({
        write(_chunk, _encoding, callback) {
          callback(new Error('spool disk full'));
        },
      });
      await assert.rejects(executor.run(`echo data; ${sleeper}`, { stdout: sink, timeoutMs: 120_000 }), /spool disk full/);
      await waitFor('the command to be gone', async () => (await processesWith(sleeper)).length === 0);
    });

    void test('stdin is piped to the command byte-exact (putting a file onto the appliance)', async () => {
      const data = randomBytes(3 * 1024 * 1024 + 17);
      const path = `/tmp/vcsa-backup-contract-${randomBytes(6).toString('hex')}`;
      try {
        await executor.run(`cat > ${path}`, { stdin: Readable.from([data.subarray(0, 1000), data.subarray(1000)]), timeoutMs: 60_000 });
        const sink = new CountingSink();
        await executor.run(`cat ${path}`, { stdout: sink });
        assert.equal(sink.bytes, data.length);
        assert.equal(sink.sha256(), createHash('sha256').update(data).digest('hex'));
      } finally {
        await executor.run(`rm -f ${path}`);
      }
    });

    void test('a command that ignores its stdin still completes', async () => {
      const result = await executor.run('echo ignored-stdin', { stdin: Readable.from([randomBytes(2 * 1024 * 1024)]), timeoutMs: 120_000 });
      assert.equal(result.stdout, 'ignored-stdin\n');
    });

    void test('without stdin the command sees end of input at once', async () => {
      const result = await executor.run('cat; echo eof', { timeoutMs: 120_000 });
      assert.equal(result.stdout, 'eof\n');
    });

    void test('runs several commands at once, each with its own output and exit code', async () => {
      const runs = Array.from({ length: 6 }, (_, i) =>
        // The timeout is a cap for a hung run, not a measure: over ssh each run is a session
        // sshd forks, which takes seconds on a loaded machine.
        executor.run(`sleep 0.2; echo out-${i}; echo err-${i} >&2; exit ${i % 2 === 0 ? 0 : 4}`, { check: false, timeoutMs: 180_000 }),
      );
      const results = await Promise.all(runs);
      results.forEach((result, i) => {
        assert.equal(result.stdout, `out-${i}\n`);
        assert.equal(result.stderrTail, `err-${i}\n`);
        assert.equal(result.exitCode, i % 2 === 0 ? 0 : 4);
      });
    });

    void test('can be closed and used again', async () => {
      await executor.run('true');
      await executor.close();
      await executor.close();
      const result = await executor.run('echo again');
      assert.equal(result.stdout, 'again\n');
    });
  });
}
