/**
 * The code on Node.js 24 (the current LTS, and the vcsa-backup image's runtime) while this
 * machine runs Node 20: a real Node 24 binary from the npm registry's `node` package
 * (test/support/node24.ts, fetched once by scripts/test-setup.sh) runs the demo (two worker
 * processes back up three appliances, a restore drill, the invariants), then the test files of
 * the parts that lean on the runtime most: parallel gzip (worker threads, transferred buffers,
 * the V8 flags it sets), the encryption streams (age, and the older format's backpressure) and
 * the S3 store (the SDK and its checksums). Every child process they start is spawned with the
 * same binary (process.execPath). The fleet itself runs on Node 24 in the demo; the fleet test
 * files are not run a second time here (on a 2-core machine that doubled the suite's longest
 * file).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { repoRoot } from '../support/images.ts';
import { ensureNode24, node24Major } from '../support/node24.ts';

function run(command: string, args: readonly string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    // The runner's own variables would make the child report to this process's test runner.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NODE_TEST')));
    const child = spawn(command, args, { cwd: repoRoot, env: { ...env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-20_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

// One after the other: side by side (next to the suite's other files) they would overload a
// 2-core machine.
void describe(`Node.js ${node24Major}`, () => {
  let node: string;

  before(async () => {
    node = await ensureNode24();
  });

  void test(`the binary is Node ${node24Major}`, async () => {
    const res = await run(node, ['-p', 'process.version'], 30_000);
    assert.equal(res.code, 0, res.output);
    assert.match(res.output.trim(), new RegExp(`^v${node24Major}\\.`));
  });

  void test('the demo exits 0 (every invariant held)', async () => {
    const res = await run(node, [join(repoRoot, 'bin', 'vcsa-backup.js'), 'demo'], 300_000);
    assert.equal(res.code, 0, res.output);
    assert.match(res.output, /demo: every invariant held/);
    assert.doesNotMatch(res.output, /^FAIL/m);
  });

  void test('the runtime-sensitive test files pass (parallel gzip, the encryption streams, the S3 store)', async () => {
    const files = [join('test', 'backup', 'parallel-gzip.test.ts'), join('test', 'crypto', 'age.test.ts'), join('test', 'crypto', 'stream.test.ts'), join('test', 'storage', 's3.test.ts')];
    const res = await run(node, ['--import', 'tsx', '--test', '--test-reporter=tap', '--test-timeout=600000', ...files.map((f) => join(repoRoot, f))], 600_000);
    assert.equal(res.code, 0, res.output);
    assert.match(res.output, /# pass [1-9]/);
    assert.match(res.output, /# fail 0/);
  });
});
