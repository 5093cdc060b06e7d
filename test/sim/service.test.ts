import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createSimAppliance, type SimAppliance } from '../../src/sim/appliance.ts';
import { readAudit } from '../../src/sim/audit.ts';
import { psql } from '../../src/sim/postgres.ts';
import { bash, processAlive, readPid, waitFor } from './helpers.ts';

void describe('simulated appliance services', () => {
  let dir: string;
  let audit: string;
  let sim: SimAppliance;
  const pidFile = (svc: string): string => join(sim.root, 'var', 'run', `${svc}.pid`);
  const auditLines = async (): Promise<number> => (await readAudit(audit)).length;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sim-service-'));
    audit = join(dir, 'audit.jsonl');
    sim = await createSimAppliance({ name: `svc-${process.pid}`, baseDir: dir, auditLog: audit });
  });

  after(async () => {
    await sim?.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  void test('a new appliance runs both services and logged each start once', async () => {
    assert.equal(await sim.servicesRunning(), true);
    const entries = await readAudit(audit);
    assert.deepEqual(
      entries.map((e) => [e.appliance, e.service, e.state]),
      [
        [sim.name, 'vmware-inventoryservice', 'running'],
        [sim.name, 'vmware-vpxd', 'running'],
      ],
    );
    const first = entries[0]!;
    assert.ok(Math.abs(first.ts - Date.now()) < 60_000, 'ts is epoch milliseconds');
    const text = await readFile(audit, 'utf8');
    assert.match(text, /^\{"ts": \d+, "appliance": "[^"]+", "service": "vmware-inventoryservice", "state": "running"\}\n/);
  });

  void test('stop waits for the daemon to exit, logs one line, and is idempotent; start likewise', async () => {
    const pid = readPid(pidFile('vmware-vpxd'));
    assert.ok(processAlive(pid));
    const before = await auditLines();

    const stop = await sim.service('vmware-vpxd', 'stop');
    assert.equal(stop.exitCode, 0, stop.stderr);
    assert.equal(processAlive(pid), false, 'the daemon is gone when stop returns');
    const status = await sim.service('vmware-vpxd', 'status');
    assert.equal(status.exitCode, 3);
    assert.match(status.stdout, /stopped/);
    const seq = (await sim.readSequences()).vcdb;

    assert.equal((await sim.service('vmware-vpxd', 'stop')).exitCode, 0);
    let entries = await readAudit(audit);
    assert.equal(entries.length, before + 1, 'a second stop logs nothing');
    assert.deepEqual({ ...entries.at(-1), ts: 0 }, { ts: 0, appliance: sim.name, service: 'vmware-vpxd', state: 'stopped' });
    assert.equal((await sim.readSequences()).vcdb, seq, 'a stopped vpxd writes nothing');

    const start = await sim.service('vmware-vpxd', 'start');
    assert.equal(start.exitCode, 0, start.stderr);
    assert.equal(await sim.serviceRunning('vmware-vpxd'), true);
    assert.equal((await sim.service('vmware-vpxd', 'start')).exitCode, 0);
    entries = await readAudit(audit);
    assert.equal(entries.length, before + 2, 'a second start logs nothing');
    assert.equal(entries.at(-1)!.state, 'running');
    await waitFor('vpxd to write again', async () => (await sim.readSequences()).vcdb > seq);
  });

  void test('status reads the process, not the audit log: a SIGKILLed daemon is stopped', async () => {
    const pid = readPid(pidFile('vmware-inventoryservice'));
    const lines = await auditLines();
    process.kill(pid, 'SIGKILL');
    await waitFor('status to report stopped', async () => (await sim.service('vmware-inventoryservice', 'status')).exitCode === 3);
    assert.equal(await sim.servicesRunning(), false);
    assert.equal(await auditLines(), lines, 'nobody logged the crash');
    const start = await sim.service('vmware-inventoryservice', 'start');
    assert.equal(start.exitCode, 0, start.stderr);
    assert.notEqual(readPid(pidFile('vmware-inventoryservice')), pid);
    assert.equal(await sim.servicesRunning(), true);
    assert.equal((await readAudit(audit)).at(-1)!.state, 'running');
  });

  void test('killing the process group of whoever ran `service start` leaves the daemon running', async () => {
    assert.equal((await sim.service('vmware-vpxd', 'stop')).exitCode, 0);
    // Like a worker: its own process group, the start command, then the worker dies.
    const worker = spawn('/bin/bash', ['-c', `${sim.serviceCommand} vmware-vpxd start && exec sleep 60`], { detached: true, stdio: 'ignore' });
    const exited = once(worker, 'exit');
    await waitFor('vpxd to start', () => sim.serviceRunning('vmware-vpxd'));
    const pid = readPid(pidFile('vmware-vpxd'));
    process.kill(-worker.pid!, 'SIGKILL');
    await exited;
    const seq = (await sim.readSequences()).vcdb;
    assert.equal(processAlive(pid), true);
    assert.equal(await sim.serviceRunning('vmware-vpxd'), true);
    await waitFor('vpxd to keep writing', async () => (await sim.readSequences()).vcdb > seq);
  });

  void test('unknown services and actions exit 1 with a message on stderr', async () => {
    const unknownService = await bash(`${sim.serviceCommand} vmware-sps stop`);
    assert.equal(unknownService.exitCode, 1);
    assert.match(unknownService.stderr, /unrecognized service 'vmware-sps'/);
    const unknownAction = await bash(`${sim.serviceCommand} vmware-vpxd reload`);
    assert.equal(unknownAction.exitCode, 1);
    assert.match(unknownAction.stderr, /unknown action 'reload'/);
    const none = await bash(sim.serviceCommand);
    assert.equal(none.exitCode, 1);
    assert.match(none.stderr, /usage/);
    assert.equal(await sim.servicesRunning(), true, 'nothing was touched');
  });

  void test('concurrent stop and start of one service keep the log consistent', async () => {
    const lines = await auditLines();
    const results = await Promise.all([sim.service('vmware-vpxd', 'stop'), sim.service('vmware-vpxd', 'stop'), sim.service('vmware-vpxd', 'status')]);
    assert.deepEqual(results.slice(0, 2).map((r) => r.exitCode), [0, 0]);
    assert.equal(await auditLines(), lines + 1);
    await Promise.all([sim.service('vmware-vpxd', 'start'), sim.service('vmware-vpxd', 'start')]);
    assert.equal(await auditLines(), lines + 2);
    assert.equal(await sim.servicesRunning(), true);
  });
});

void describe('simulated appliance lifetime', () => {
  void test('destroy stops the daemons, drops the databases and removes the tree', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sim-destroy-'));
    try {
      const sim = await createSimAppliance({ name: 'gone', baseDir: dir, auditLog: join(dir, 'audit.jsonl') });
      const pids = ['vmware-vpxd', 'vmware-inventoryservice'].map((s) => readPid(join(sim.root, 'var', 'run', `${s}.pid`)));
      await sim.destroy();
      for (const pid of pids) assert.equal(processAlive(pid), false);
      const left = await psql(
        'postgres://postgres@127.0.0.1:5432/postgres',
        `SELECT count(*) FROM pg_database WHERE datname IN ('${sim.vcdbName}', '${sim.inventoryDbName}');`,
      );
      assert.equal(left.trim(), '0');
      await assert.rejects(readFile(sim.serviceCommand), { code: 'ENOENT' });
      await sim.destroy();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void test('the daemons exit on their own when the process that owns the simulation is gone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sim-owner-'));
    const owner = spawn('sleep', ['60'], { stdio: 'ignore' });
    const sim = await createSimAppliance({ name: 'orphan', baseDir: dir, auditLog: join(dir, 'audit.jsonl'), ownerPid: owner.pid! });
    try {
      assert.equal(await sim.servicesRunning(), true);
      const pids = ['vmware-vpxd', 'vmware-inventoryservice'].map((s) => readPid(join(sim.root, 'var', 'run', `${s}.pid`)));
      owner.kill('SIGKILL');
      await once(owner, 'exit');
      await waitFor('the daemons to exit', () => pids.every((pid) => !processAlive(pid)));
      assert.equal(await sim.serviceRunning('vmware-vpxd'), false);
    } finally {
      await sim.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  });

  void test('bad names are refused before anything is created', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sim-badname-'));
    try {
      await assert.rejects(createSimAppliance({ name: 'vc:01', baseDir: dir, auditLog: join(dir, 'audit.jsonl') }), { code: 'SIM_BAD_NAME' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
