import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LocalExecutor } from '../../src/executors/local.ts';
import { createExecutor } from '../../src/executors/index.ts';
import { silentLogger } from '../../src/log.ts';
import { executorContract, rejectsWithCode } from './contract.ts';

executorContract('local', () => Promise.resolve({ executor: createExecutor({ type: 'local', shell: '/bin/bash' }, silentLogger), cleanup: () => Promise.resolve() }));

void test('local: a missing shell is a permanent LOCAL_SPAWN_FAILED naming the shell', async () => {
  const executor = new LocalExecutor({ shell: '/nonexistent/bash' });
  const err = await rejectsWithCode(executor.run('true'), 'LOCAL_SPAWN_FAILED');
  assert.equal(err.permanent, true);
  assert.match(err.message, /\/nonexistent\/bash/);
});

void test('local: a command that ignores SIGTERM is killed after the grace period', async () => {
  const executor = new LocalExecutor({}, silentLogger, { killGraceMs: 200 });
  const started = Date.now();
  await rejectsWithCode(executor.run("trap '' TERM; sleep 20 & wait; sleep 20", { timeoutMs: 200 }), 'COMMAND_TIMEOUT');
  assert.ok(Date.now() - started < 5000);
});
