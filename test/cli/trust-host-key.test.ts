import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { loadConfig } from '../../src/config/load.ts';
import { createExecutor } from '../../src/executors/index.ts';
import { silentLogger } from '../../src/log.ts';
import { startSshd, type Sshd } from '../support/sshd.ts';

const run = promisify(execFile);
const bin = join(import.meta.dirname, '../../bin/vcsa-backup.js');
// A well-formed fingerprint that no real key has: the "appliance was reinstalled" situation.
const oldKey = 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

let sshd: Sshd;
let dir: string;

before(async () => {
  sshd = await startSshd();
  dir = await mkdtemp(join(tmpdir(), 'vcsa-trust-'));
});

after(async () => {
  await sshd.cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { env: { ...process.env, LOG_LEVEL: 'warn' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

void test('a changed host key is refused, then accepted deliberately with trust-host-key, keeping the file as written', async () => {
  const configPath = join(dir, 'fleet.yaml');
  await writeFile(
    configPath,
    [
      '# fleet of one, over ssh',
      's3: { bucket: unused-bucket, endpoint: "http://127.0.0.1:9" }',
      'targets:',
      '  - name: vc01 # the reinstalled one',
      '    profile: postgres',
      '    executor:',
      '      type: ssh',
      `      host: ${sshd.host}`,
      `      port: ${sshd.port}`,
      `      hostKey: "${oldKey}"`,
      `      privateKey: { file: ${sshd.privateKeyPath} }`,
      '',
    ].join('\n'),
  );

  // The pinned key no longer matches: the executor refuses, naming both fingerprints.
  const before = loadConfig(configPath).targets[0]!;
  const executor = createExecutor(before.executor, silentLogger);
  await assert.rejects(executor.run('true'), (err: { code?: string; permanent?: boolean; message: string }) => {
    assert.equal(err.code, 'SSH_HOST_KEY_MISMATCH');
    assert.equal(err.permanent, true);
    assert.ok(err.message.includes(oldKey) && err.message.includes(sshd.hostKeyFingerprint), err.message);
    return true;
  });
  await executor.close();

  // Without --yes and without a terminal nothing is changed.
  const refused = await cli(['trust-host-key', '--target', 'vc01', '--config', configPath]);
  assert.equal(refused.code, 2, refused.stderr);
  assert.ok((await readFile(configPath, 'utf8')).includes(oldKey));

  const shown = await cli(['trust-host-key', '--target', 'vc01', '--config', configPath, '--json']);
  assert.equal(shown.code, 1);
  const report = JSON.parse(shown.stdout) as { pinned: string; presented: string; matches: boolean; updated: boolean };
  assert.deepEqual([report.pinned, report.presented, report.matches, report.updated], [oldKey, sshd.hostKeyFingerprint, false, false]);

  const accepted = await cli(['trust-host-key', '--target', 'vc01', '--config', configPath, '--yes']);
  assert.equal(accepted.code, 0, accepted.stderr);
  const text = await readFile(configPath, 'utf8');
  assert.ok(text.includes(sshd.hostKeyFingerprint) && !text.includes(oldKey));
  assert.ok(text.includes('# fleet of one, over ssh') && text.includes('# the reinstalled one'), 'comments kept');

  const after = loadConfig(configPath).targets[0]!;
  const again = createExecutor(after.executor, silentLogger);
  try {
    assert.equal((await again.run('echo ok')).stdout.trim(), 'ok');
  } finally {
    await again.close();
  }
});
