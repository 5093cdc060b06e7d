import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readAudit } from '../../src/sim/audit.ts';
import type { BackupOutcome } from '../../src/backup/run-backup.ts';
import { runCliInProcess } from '../support/cli-in-process.ts';
import { createFixture, type Fixture } from './fixture.ts';

const bin = fileURLToPath(new URL('../../bin/vcsa-backup.js', import.meta.url));

interface ListDoc {
  backups: { id: string; at: string; manifestKey: string; profile: string; encrypted: boolean; artifacts: { name: string; sha256: string; bytes: number }[] }[];
}

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the CLI as its own process with no terminal (stdin closed), as cron or CI would. Costs a
 * tsx start-up (seconds on a loaded CI machine): used where the promise is about the process
 * itself; the other commands run in process (`cli` below), through the same `main`.
 */
function cliProcess(args: readonly string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [bin, ...args], { env: { ...process.env, LOG_LEVEL: 'warn', REDIS_URL: '' }, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`cannot run the CLI: ${err.message}`));
        return;
      }
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
    child.stdin?.end();
  });
}

/** The same `main` as bin/vcsa-backup.js, in this process. */
function cli(args: readonly string[]): Promise<CliResult> {
  return runCliInProcess(args, { LOG_LEVEL: 'warn' });
}

void describe('CLI: list, restore, verify, prune', () => {
  let fx: Fixture;
  let configPath: string;
  const backups: BackupOutcome[] = [];

  before(async () => {
    fx = await createFixture(['vc1']);
    configPath = join(fx.dir, 'fleet.yaml');
    await writeFile(configPath, fx.yaml({ retention: { keepLast: 1 } }));
    backups.push(await fx.backup('vc1'));
    backups.push(await fx.backup('vc1'));
  });
  after(async () => {
    await fx?.close();
  });

  void test('list --json: complete backups, newest first, with sizes and checksums', async () => {
    const res = await cli(['list', '--target', 'vc1', '--config', configPath, '--json']);
    assert.equal(res.code, 0, res.stderr);
    const doc = JSON.parse(res.stdout) as ListDoc;
    assert.deepEqual(doc.backups.map((b) => b.id), [backups[1]!.manifest.id, backups[0]!.manifest.id]);
    const newest = doc.backups[0]!;
    assert.equal(newest.manifestKey, backups[1]!.manifestKey);
    assert.equal(newest.profile, 'vcsa-5.5');
    assert.equal(newest.encrypted, false);
    assert.ok(!Number.isNaN(Date.parse(newest.at)));
    assert.deepEqual(newest.artifacts.map((a) => [a.name, a.sha256, a.bytes]), backups[1]!.manifest.artifacts.map((a) => [a.name, a.sha256, a.bytes]));

    const human = await cli(['list', '--target', 'vc1', '--config', configPath]);
    assert.equal(human.code, 0);
    assert.match(human.stdout, /^ID\s+TAKEN \(UTC\)\s+AGE\s+SIZE/m);
    assert.ok(human.stdout.indexOf(backups[1]!.manifest.id) < human.stdout.indexOf(backups[0]!.manifest.id));
  });

  void test('restore without a terminal and without --yes is bad input, and touches nothing', async () => {
    const auditBefore = (await readAudit(fx.auditLog)).length;
    const res = await cliProcess(['restore', '--target', 'vc1', '--config', configPath]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /--yes/);
    assert.equal((await readAudit(fx.auditLog)).length, auditBefore);
  });

  void test('an unknown backup id exits 2 with BACKUP_NOT_FOUND, naming the ids that exist', async () => {
    for (const args of [['restore', '--yes'], ['verify']]) {
      const cmd = args[0];
      const res = await cli([...args, '--target', 'vc1', '--backup', 'nope', '--config', configPath, '--json']);
      assert.equal(res.code, 2, `${cmd}: ${res.stderr}`);
      const doc = JSON.parse(res.stdout) as { error: { code: string; message: string } };
      assert.equal(doc.error.code, 'BACKUP_NOT_FOUND');
      assert.ok(doc.error.message.includes(backups[0]!.manifest.id));
    }
  });

  void test('restore --yes --json restores the chosen backup', async () => {
    const res = await cli(['restore', '--target', 'vc1', '--backup', backups[0]!.manifest.id, '--yes', '--config', configPath, '--json']);
    assert.equal(res.code, 0, res.stderr);
    const doc = JSON.parse(res.stdout);
    assert.equal(doc.restore.ok, true);
    assert.equal(doc.restore.id, backups[0]!.manifest.id);
    assert.deepEqual(doc.restore.restored, ['vcdb', 'inventory']);
    assert.equal(await fx.appliances.get('vc1')!.servicesRunning(), true);
  });

  void test('verify --json exits 0 for a good backup and the result shows in the fleet state', async () => {
    const res = await cli(['verify', '--target', 'vc1', '--config', configPath, '--json']);
    assert.equal(res.code, 0, res.stderr);
    const doc = JSON.parse(res.stdout);
    assert.equal(doc.ok, true);
    assert.equal(doc.id, backups[1]!.manifest.id);
    const stored = JSON.parse((await fx.redis.hget(`${fx.prefix}:target:vc1`, 'lastVerify'))!);
    assert.equal(stored.ok, true);
  });

  void test('prune --dry-run reports, prune deletes, the newest backup stays', async () => {
    const dry = await cli(['prune', '--dry-run', '--config', configPath, '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    const plan = JSON.parse(dry.stdout) as { targets: { deleted: { id: string }[] }[] };
    assert.deepEqual(plan.targets[0]!.deleted.map((d) => d.id), [backups[0]!.manifest.id]);
    const real = await cli(['prune', '--target', 'vc1', '--config', configPath]);
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, /vc1: kept 1, deleted 1/);
    const list = JSON.parse((await cli(['list', '--target', 'vc1', '--config', configPath, '--json'])).stdout) as ListDoc;
    assert.deepEqual(list.backups.map((b) => b.id), [backups[1]!.manifest.id]);
  });
});
