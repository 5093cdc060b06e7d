import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { readAudit } from '../../src/sim/audit.ts';
import { readSimJson } from '../../src/sim/fleet.ts';
import { psql } from '../../src/sim/postgres.ts';
import { bash, processAlive, readPid, waitFor } from './helpers.ts';

const cli = join(import.meta.dirname, '..', '..', 'bin', 'vcsa-backup.js');

function runCli(args: readonly string[]): { child: ReturnType<typeof spawn>; stdout: () => string; stderr: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'warn' } });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')));
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  return { child, stdout: () => out, stderr: () => err, exit };
}

async function databasesNamed(names: readonly string[]): Promise<number> {
  const list = names.map((n) => `'${n}'`).join(', ');
  return Number((await psql('postgres://postgres@127.0.0.1:5432/postgres', `SELECT count(*) FROM pg_database WHERE datname IN (${list});`)).trim());
}

void describe('vcsa-backup simulate', () => {
  void test('starts a fleet with a usable fleet.yaml and sim.json, and removes it on SIGTERM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sim-cli-'));
    const run = runCli(['simulate', '--count', '2', '--out', dir, '--json']);
    try {
      const simPath = join(dir, 'sim.json');
      await waitFor('sim.json', () => existsSync(simPath) || run.child.exitCode !== null, 60_000);
      assert.equal(run.child.exitCode, null, `simulate exited early: ${run.stderr()}`);
      const sim = await readSimJson(simPath);
      assert.deepEqual(sim.appliances.map((a) => a.name), ['vc01', 'vc02']);
      assert.equal(sim.audit, join(dir, 'audit.jsonl'));
      assert.match(sim.s3.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
      for (const key of ['bucket', 'region', 'accessKeyId', 'secretAccessKey'] as const) assert.ok(sim.s3[key], key);
      const res = await fetch(`${sim.s3.endpoint}/${sim.s3.bucket}?list-type=2`);
      assert.equal(res.status, 200, 'the embedded S3 endpoint serves the bucket');

      const config = loadConfig(join(dir, 'fleet.yaml'), { env: {} });
      assert.deepEqual(config.targets.map((t) => t.name), ['vc01', 'vc02']);
      assert.equal(config.s3.endpoint, sim.s3.endpoint);
      assert.equal(config.s3.secretAccessKey?.reveal(), sim.s3.secretAccessKey);
      assert.doesNotMatch(await readFile(join(dir, 'fleet.yaml'), 'utf8'), new RegExp(sim.s3.secretAccessKey), 'credentials are files, not inline');

      const pids: number[] = [];
      const dbNames: string[] = [];
      for (const target of config.targets) {
        assert.equal(target.profile, 'vcsa-5.5');
        assert.equal(target.executor.type, 'local');
        for (const service of target.boundProfile.services) {
          const status = await bash(service.status);
          assert.equal(status.exitCode, 0, `${target.name} ${service.name}: ${status.stdout.toString()}`);
          pids.push(readPid(join(target.boundProfile.variables['ROOT']!, 'var', 'run', `${service.name}.pid`)));
        }
      }
      for (const a of sim.appliances) dbNames.push(new URL(a.vcdbUrl).pathname.slice(1), new URL(a.inventoryUrl).pathname.slice(1));
      assert.equal(await databasesNamed(dbNames), 4);
      const audit = await readAudit(sim.audit);
      assert.equal(audit.filter((l) => l.state === 'running').length, 4);
      const printed = JSON.parse(run.stdout()) as { config: string };
      assert.equal(printed.config, join(dir, 'fleet.yaml'));

      run.child.kill('SIGTERM');
      assert.equal(await run.exit, 0, run.stderr());
      assert.equal(await databasesNamed(dbNames), 0, 'databases are dropped');
      for (const pid of pids) assert.equal(processAlive(pid), false, `daemon ${pid} is gone`);
      assert.deepEqual(await readdir(join(dir, 'appliances')), []);
      assert.equal(
        (await readAudit(sim.audit)).filter((l) => l.state === 'stopped').length,
        4,
        'each service logged its stop',
      );
    } finally {
      if (run.child.exitCode === null) {
        run.child.kill('SIGTERM');
        await run.exit;
      }
      await rm(dir, { recursive: true, force: true });
    }
  });

  void test('with --s3-endpoint it stays up until SIGTERM (a stopped service starts again), then removes its databases', async () => {
    // Nothing of simulate's own holds the event loop when the S3 endpoint is external: the
    // command must keep itself alive, or the daemons (which watch its pid) refuse to start.
    const dir = await mkdtemp(join(tmpdir(), 'sim-cli-ext-'));
    const run = runCli(['simulate', '--count', '1', '--out', dir, '--s3-endpoint', 'http://127.0.0.1:9']);
    try {
      await waitFor('simulate to say it runs', () => run.stderr().includes('running until SIGTERM') || run.child.exitCode !== null, 60_000);
      const sim = await readSimJson(join(dir, 'sim.json'));
      assert.equal(sim.s3.endpoint, 'http://127.0.0.1:9');
      const config = loadConfig(join(dir, 'fleet.yaml'), { env: {} });
      const vpxd = config.targets[0]!.boundProfile.services[0]!;
      // A stop and a start take the daemons' own time: the owner must still be there after both.
      assert.equal((await bash(vpxd.stop)).exitCode, 0);
      const started = await bash(vpxd.start);
      assert.equal(started.exitCode, 0, started.stderr);
      assert.equal((await bash(vpxd.status)).exitCode, 0, 'vpxd runs again after a stop');
      assert.equal(run.child.exitCode, null, `simulate exited early: ${run.stderr()}`);
      const dbNames = sim.appliances.flatMap((a) => [new URL(a.vcdbUrl).pathname.slice(1), new URL(a.inventoryUrl).pathname.slice(1)]);
      assert.equal(await databasesNamed(dbNames), 2);

      run.child.kill('SIGTERM');
      assert.equal(await run.exit, 0, run.stderr());
      assert.match(run.stderr(), /simulate: done/);
      assert.equal(await databasesNamed(dbNames), 0, 'databases are dropped');
    } finally {
      if (run.child.exitCode === null) {
        run.child.kill('SIGTERM');
        await run.exit;
      }
      await rm(dir, { recursive: true, force: true });
    }
  });

  void test('bad arguments exit 2 and start nothing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sim-cli-bad-'));
    try {
      for (const [args, message] of [
        [['simulate', '--count', '0', '--out', dir], /--count: expected an integer from 1 and up, got `0`/],
        [['simulate', '--count', '2'], /--out: required/],
        [['simulate', '--out', dir], /--count: required/],
        [['simulate', '--count', '1', '--out', dir, '--pg-url', 'mysql://x'], /--pg-url: expected postgres:\/\//],
      ] as const) {
        const run = runCli(args);
        assert.equal(await run.exit, 2, run.stderr());
        assert.match(run.stderr(), message);
      }
      assert.deepEqual(await readdir(dir), [], 'nothing was created');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
