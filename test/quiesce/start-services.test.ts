import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, describe, test } from 'node:test';
import { LocalExecutor } from '../../src/executors/local.ts';
import { silentLogger } from '../../src/log.ts';
import type { ServiceSpec } from '../../src/profiles/profile.ts';
import { startServices } from '../../src/quiesce/services.ts';
import { rejectsWithCode } from '../support/poll.ts';

/**
 * startServices through the local executor, on services that are files: `start` creates one
 * (unless told to fail), `status` tests for it, and every command appends a line to a journal.
 * What it promises: every start before any confirmation (so the services are down no longer
 * than with the classic script), a service not confirmed started again after the others, and
 * SERVICES_NOT_RUNNING naming each service still down with the reason.
 */
void describe('startServices: start all, then confirm each', () => {
  let dir = '';
  const executor = new LocalExecutor({}, silentLogger);
  const journal = (): Promise<string[]> => readFile(join(dir, 'journal'), 'utf8').then((t) => t.split('\n').filter(Boolean), () => []);

  /** A service whose start fails its first `failStarts` times (Infinity: always), or exits 0 without starting (`startsNothing`). */
  const service = (name: string, options: { failStarts?: number; startsNothing?: boolean } = {}): ServiceSpec => {
    const count = join(dir, `${name}.starts`);
    const running = join(dir, `${name}.running`);
    const fails = options.failStarts === Infinity ? 1_000_000 : (options.failStarts ?? 0);
    return {
      name,
      stop: `echo 'stop ${name}' >> ${dir}/journal; rm -f ${running}`,
      start: [
        `echo 'start ${name}' >> ${dir}/journal`,
        `n=$(( $(cat ${count} 2>/dev/null || echo 0) + 1 )); echo $n > ${count}`,
        `if [ $n -le ${fails} ]; then echo '${name} refused to start (try '$n')' >&2; exit 1; fi`,
        options.startsNothing ? 'exit 0' : `touch ${running}`,
      ].join('; '),
      status: `echo 'status ${name}' >> ${dir}/journal; test -e ${running} || { echo '${name} is not running' >&2; exit 3; }`,
    };
  };

  beforeEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = await mkdtemp(join(tmpdir(), 'start-services-'));
    await writeFile(join(dir, 'journal'), '');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void test('every service is started, in order, before the first is confirmed', async () => {
    await startServices({ executor, services: [service('inventory'), service('vpxd')], timeoutMs: 30_000, logger: silentLogger });
    assert.deepEqual(await journal(), ['start inventory', 'start vpxd', 'status inventory', 'status vpxd']);
  });

  void test('a service whose start failed once is started again after the others, and confirmed', async () => {
    await startServices({ executor, services: [service('inventory', { failStarts: 1 }), service('vpxd')], timeoutMs: 30_000, logger: silentLogger });
    assert.deepEqual(await journal(), ['start inventory', 'start vpxd', 'status inventory', 'status vpxd', 'start inventory', 'status inventory']);
  });

  void test('one that never comes up: the others still run, and SERVICES_NOT_RUNNING says which and why', async () => {
    const err = await rejectsWithCode(
      startServices({ executor, services: [service('inventory', { failStarts: Infinity }), service('vpxd'), service('sps', { startsNothing: true })], timeoutMs: 30_000, logger: silentLogger }),
      'SERVICES_NOT_RUNNING',
    );
    // The start's own error for the one that refused; the status's for the one that exited 0 and is not running.
    assert.match(err.message, /inventory \(.*inventory refused to start \(try 3\)/);
    assert.match(err.message, /sps \(status exited 3: sps is not running\)/);
    assert.doesNotMatch(err.message, /vpxd/);
    const lines = await journal();
    assert.equal(lines.filter((l) => l === 'start inventory').length, 3, 'three tries');
    assert.equal(lines.filter((l) => l === 'start vpxd').length, 1, 'vpxd, confirmed at once, is not started again');
    assert.deepEqual(lines.slice(0, 3), ['start inventory', 'start vpxd', 'start sps']);
  });
});
