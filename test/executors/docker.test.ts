import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createExecutor } from '../../src/executors/index.ts';
import { containerRunning, DockerExecutor, startContainer, stopContainer } from '../../src/executors/docker.ts';
import { silentLogger } from '../../src/log.ts';
import { startTestContainer, type TestContainer } from '../support/dockerd.ts';
import { executorContract, rejectsWithCode } from './contract.ts';

executorContract('docker', async () => {
  const container = await startTestContainer();
  return { executor: createExecutor({ type: 'docker', container: container.name }, silentLogger), cleanup: () => container.remove() };
});

void describe('docker executor: container states and service actions', () => {
  let running: TestContainer;
  let created: TestContainer;
  before(async () => {
    [running, created] = await Promise.all([startTestContainer(), startTestContainer({ start: false })]);
  });
  after(async () => {
    await Promise.all([running.remove(), created.remove()]);
  });

  void test('a container that does not exist is a permanent DOCKER_NO_CONTAINER naming it', async () => {
    const executor = new DockerExecutor({ container: 'vcsa-backup-no-such-container' });
    const err = await rejectsWithCode(executor.run('true'), 'DOCKER_NO_CONTAINER');
    assert.equal(err.permanent, true);
    assert.match(err.message, /vcsa-backup-no-such-container/);
    await rejectsWithCode(containerRunning('vcsa-backup-no-such-container'), 'DOCKER_NO_CONTAINER');
  });

  void test('a stopped container is DOCKER_NOT_RUNNING and says how to start it', async () => {
    const executor = new DockerExecutor({ container: created.name });
    const err = await rejectsWithCode(executor.run('true'), 'DOCKER_NOT_RUNNING');
    assert.ok(err.message.includes(`docker start ${created.name}`), err.message);
    assert.equal(await containerRunning(created.name), false);
  });

  void test('an engine that does not answer is DOCKER_UNREACHABLE', async () => {
    const executor = new DockerExecutor({ container: running.name, socketPath: '/nonexistent/docker.sock' });
    const err = await rejectsWithCode(executor.run('true'), 'DOCKER_UNREACHABLE');
    assert.equal(err.permanent, false);
    assert.match(err.message, /\/nonexistent\/docker\.sock/);
  });

  void test('runs as the configured user', async () => {
    const executor = new DockerExecutor({ container: running.name, user: 'nobody' });
    assert.equal((await executor.run('id -un')).stdout, 'nobody\n');
  });

  void test('stopContainer returns the undo that starts it again; both tolerate the state already reached', async () => {
    const executor = new DockerExecutor({ container: running.name });
    assert.equal(await containerRunning(running.name), true);
    const undo = await stopContainer(running.name, {}, 5);
    try {
      assert.equal(await containerRunning(running.name), false);
      await rejectsWithCode(executor.run('true'), 'DOCKER_NOT_RUNNING');
      const again = await stopContainer(running.name, {}, 5);
      await again();
      assert.equal(await containerRunning(running.name), false, 'the undo of a no-op stop starts nothing');
    } finally {
      await undo();
    }
    assert.equal(await containerRunning(running.name), true);
    await startContainer(running.name);
    assert.equal((await executor.run('echo back')).stdout, 'back\n');
  });
});
