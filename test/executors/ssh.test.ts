import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { SshExecutorConfig } from '../../src/config/load.ts';
import { Secret } from '../../src/config/secret.ts';
import { createExecutor } from '../../src/executors/index.ts';
import { fetchHostKeyFingerprint, SshExecutor } from '../../src/executors/ssh.ts';
import { silentLogger } from '../../src/log.ts';
import { makeKeyPair, startSshd, freePort, type Sshd } from '../support/sshd.ts';
import { executorContract, processesWith, rejectsWithCode, waitFor } from './contract.ts';

const run = promisify(execFile);

function settingsFor(sshd: Sshd, overrides: Partial<SshExecutorConfig> = {}): SshExecutorConfig {
  return {
    type: 'ssh',
    host: sshd.host,
    port: sshd.port,
    user: 'root',
    hostKey: sshd.hostKeyFingerprint,
    privateKey: new Secret(sshd.privateKey, 'test key'),
    keepaliveSeconds: 5,
    connectTimeoutSeconds: 5,
    ...overrides,
  };
}

executorContract('ssh', async () => {
  const sshd = await startSshd();
  return { executor: createExecutor(settingsFor(sshd), silentLogger), cleanup: () => sshd.cleanup() };
});

void describe('ssh executor: connection, host key and authentication', () => {
  let sshd: Sshd;
  before(async () => {
    sshd = await startSshd();
  });
  after(async () => {
    await sshd.cleanup();
  });

  void test('the fingerprint it computes is the one ssh-keygen prints', async () => {
    const fetched = await fetchHostKeyFingerprint(sshd.host, sshd.port, 5000);
    assert.equal(fetched.fingerprint, sshd.hostKeyFingerprint);
    assert.equal(fetched.keyType, 'ssh-ed25519');
  });

  void test('a wrong pinned host key refuses to connect, runs nothing, and names both fingerprints', async () => {
    const pinned = `SHA256:${randomBytes(32).toString('base64').replace(/=+$/, '')}`;
    const executor = new SshExecutor(settingsFor(sshd, { hostKey: pinned }));
    const marker = join(sshd.dir, `should-not-exist-${randomBytes(4).toString('hex')}`);
    const err = await rejectsWithCode(executor.run(`touch ${marker}`), 'SSH_HOST_KEY_MISMATCH');
    assert.equal(err.permanent, true);
    assert.ok(err.message.includes(pinned), err.message);
    assert.ok(err.message.includes(sshd.hostKeyFingerprint), err.message);
    assert.match(err.message, /hostKey in fleet\.yaml/);
    assert.match(err.message, /ssh-keygen -lf/);
    assert.equal(existsSync(marker), false);
    await executor.close();
  });

  void test('a knownHosts file is honoured: the right key connects, a wrong one is a mismatch', async () => {
    const good = join(sshd.dir, 'known_hosts_good');
    await writeFile(good, `# comment\notherhost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEzrrd0Hm3c0CyyUQy7B3Ku9Kgc1OTwsLSf8+7AMEs7X\n${sshd.knownHostsLine}`);
    const ok = new SshExecutor(settingsFor(sshd, { hostKey: undefined, knownHosts: good }));
    assert.equal((await ok.run('echo via-known-hosts')).stdout, 'via-known-hosts\n');
    await ok.close();

    const other = await makeKeyPair(sshd.dir, `other_host_${randomBytes(3).toString('hex')}`);
    const bad = join(sshd.dir, 'known_hosts_bad');
    const [type, blob] = other.publicKey.split(' ');
    await writeFile(bad, `[127.0.0.1]:${sshd.port} ${type} ${blob}\n`);
    const refused = new SshExecutor(settingsFor(sshd, { hostKey: undefined, knownHosts: bad }));
    const err = await rejectsWithCode(refused.run('true'), 'SSH_HOST_KEY_MISMATCH');
    assert.ok(err.message.includes(sshd.hostKeyFingerprint), err.message);
    assert.equal(err.permanent, true);

    const empty = join(sshd.dir, 'known_hosts_empty');
    await writeFile(empty, 'otherhost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEzrrd0Hm3c0CyyUQy7B3Ku9Kgc1OTwsLSf8+7AMEs7X\n');
    const unknown = new SshExecutor(settingsFor(sshd, { hostKey: undefined, knownHosts: empty }));
    assert.equal((await rejectsWithCode(unknown.run('true'), 'SSH_HOST_KEY_UNKNOWN')).permanent, true);
  });

  void test('a key the appliance does not accept is a permanent SSH_AUTH_FAILED', async () => {
    const stranger = await makeKeyPair(sshd.dir, `stranger_${randomBytes(3).toString('hex')}`);
    const executor = new SshExecutor(settingsFor(sshd, { privateKey: new Secret(stranger.privateKey, 'stranger') }));
    const err = await rejectsWithCode(executor.run('true'), 'SSH_AUTH_FAILED');
    assert.equal(err.permanent, true);
    assert.match(err.message, /root/);
    assert.doesNotMatch(err.message, /PRIVATE KEY/);
    await executor.close();
  });

  void test('authenticates through an ssh-agent socket', async () => {
    const socket = join(sshd.dir, `agent-${randomBytes(3).toString('hex')}.sock`);
    const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    try {
      await waitFor('ssh-agent to listen', () => existsSync(socket));
      await run('ssh-add', ['-q', sshd.privateKeyPath], { env: { ...process.env, SSH_AUTH_SOCK: socket } });
      const { privateKey: _unused, ...withoutKey } = settingsFor(sshd);
      const executor = new SshExecutor({ ...withoutKey, agent: socket });
      assert.equal((await executor.run('echo via-agent')).stdout, 'via-agent\n');
      await executor.close();
    } finally {
      agent.kill();
    }
  });

  void test('nothing listening is a retryable SSH_UNREACHABLE', async () => {
    const executor = new SshExecutor(settingsFor(sshd, { port: await freePort() }));
    const err = await rejectsWithCode(executor.run('true'), 'SSH_UNREACHABLE');
    assert.equal(err.permanent, false);
    assert.match(err.message, /ECONNREFUSED/);
  });

  void test('commands share one connection', async () => {
    const executor = new SshExecutor(settingsFor(sshd));
    try {
      const first = await executor.run('echo "$SSH_CONNECTION"');
      const second = await executor.run('echo "$SSH_CONNECTION"');
      assert.ok(first.stdout.trim().length > 0);
      assert.equal(second.stdout, first.stdout, 'same client port: the connection was reused');
    } finally {
      await executor.close();
    }
  });

  void test('a connection dropped mid-command rejects the run, stops the remote command, and the next run reconnects', async () => {
    const executor = new SshExecutor(settingsFor(sshd));
    try {
      // Far longer than the wait below: gone means stopped, not finished.
      const sleeper = `sleep 300.${String(Math.floor(Math.random() * 1e9)).padStart(9, '1')}`;
      let startedOutput: () => void = () => undefined;
      const commandStarted = new Promise<void>((resolve) => {
        startedOutput = resolve;
      });
      const sink = new Writable({
        write(_chunk, _encoding, callback) {
          startedOutput();
          callback();
        },
      });
      const rejected = rejectsWithCode(executor.run(`echo started; ${sleeper}`, { stdout: sink, timeoutMs: 30_000 }), 'SSH_CONNECTION_LOST');
      await commandStarted;
      await sshd.dropSessions();
      const err = await rejected;
      assert.equal(err.permanent, false);
      await waitFor('the orphaned remote command to be stopped', async () => (await processesWith(sleeper)).length === 0);
      assert.equal((await executor.run('echo reconnected')).stdout, 'reconnected\n');

      await sshd.stop();
      await rejectsWithCode(executor.run('true'), 'SSH_UNREACHABLE');
      await sshd.start();
      assert.equal((await executor.run('echo back')).stdout, 'back\n');
    } finally {
      await executor.close();
    }
  });
});

void test('ssh: a login shell that is not a POSIX shell (VCSA 6.x appliancesh) is a permanent SSH_SHELL_UNSUPPORTED', async () => {
  const sshd = await startSshd({ extraConfig: ['ForceCommand echo "Unknown command: printf" >&2; exit 1'] });
  const executor = new SshExecutor(settingsFor(sshd));
  try {
    const err = await rejectsWithCode(executor.run('true'), 'SSH_SHELL_UNSUPPORTED');
    assert.equal(err.permanent, true);
    assert.match(err.message, /Unknown command/);
    assert.match(err.message, /chsh -s \/bin\/bash root/);
  } finally {
    await executor.close();
    await sshd.cleanup();
  }
});
