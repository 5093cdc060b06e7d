import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { startFleetHarness, type FleetHarness } from '../support/fleet.ts';
import { RedisServer } from '../support/redis-server.ts';
import { redisText } from '../support/redis-text.ts';

const run = promisify(execFile);

/** A CA and a server certificate for 127.0.0.1 signed by it, plus an unrelated CA, made with openssl. */
async function makeCertificates(dir: string): Promise<{ ca: string; wrongCa: string; cert: string; key: string }> {
  const p = (name: string): string => join(dir, name);
  const ssl = (...args: string[]): Promise<unknown> => run('openssl', args);
  for (const ca of ['ca', 'wrong-ca']) {
    await ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=vcsa-backup test ${ca}`, '-keyout', p(`${ca}.key`), '-out', p(`${ca}.pem`));
  }
  await ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', p('server.key'), '-out', p('server.csr'));
  await writeFile(p('server.ext'), 'subjectAltName = IP:127.0.0.1, DNS:localhost\n');
  await ssl('x509', '-req', '-in', p('server.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', p('server.ext'), '-out', p('server.pem'));
  return { ca: p('ca.pem'), wrongCa: p('wrong-ca.pem'), cert: p('server.pem'), key: p('server.key') };
}

/**
 * Redis on TLS only (a private CA) with an ACL user; the default user is off. `status` and a
 * worker backing up a simulated appliance go through rediss://user:password@… with redis.tls.ca;
 * a wrong CA or password is one clear error naming the setting. The password is in no log, no
 * output and no Redis key.
 */
void describe('Redis over TLS with an ACL user', () => {
  const user = 'vcsa-backup';
  const password = `pw-${Math.random().toString(36).slice(2)}-secret`;
  let dir: string;
  let certs: Awaited<ReturnType<typeof makeCertificates>>;
  let server: RedisServer;
  let h: FleetHarness;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'redis-tls-'));
    certs = await makeCertificates(dir);
    server = await RedisServer.create(dir, {
      tlsOnly: true,
      args: [
        '--tls-cert-file', certs.cert, '--tls-key-file', certs.key, '--tls-ca-cert-file', certs.ca, '--tls-auth-clients', 'no',
        '--user', 'default', 'off',
        '--user', user, 'on', `>${password}`, '~*', '&*', '+@all',
      ],
      probe: { tls: { ca: await readFile(certs.ca) }, username: user, password },
    });
    const url = `rediss://${user}:${password}@127.0.0.1:${server.port}`;
    h = await startFleetHarness({
      count: 1,
      workers: 1,
      redisUrl: url,
      redisOptions: { host: '127.0.0.1', port: server.port, tls: { ca: await readFile(certs.ca) }, username: user, password },
      tune: { redis: { tls: { ca: certs.ca } } },
    });
  });
  after(async () => {
    await h?.close();
    await server?.shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  void test('status and a worker backup work through rediss:// with the private CA and the ACL user', async () => {
    const status = await h.cli(['status', '--json']);
    assert.equal(status.code, 0, status.stderr);
    const res = await h.cli(['run', '--wait', '--json'], {}, 120_000);
    assert.equal(res.code, 0, res.stderr);
    const doc = JSON.parse(res.stdout) as { backups: { target: string }[]; failures: unknown[] };
    assert.deepEqual(doc.failures, []);
    assert.deepEqual(doc.backups.map((b) => b.target), ['vc01']);
    // The connection really is the ACL user's, over TLS.
    const clients = await h.redis.client('LIST');
    assert.match(String(clients), new RegExp(`user=${user}`));
    assert.doesNotMatch(String(clients), /user=default/);

    const everything = [status.stdout, status.stderr, res.stdout, res.stderr, ...h.workers.map((w) => w.log()), await redisText(h.redis, h.prefix)].join('\n');
    assert.ok(everything.includes(h.prefix), 'the Redis dump covers the fleet keys');
    assert.ok(!everything.includes(password), 'the Redis password leaked into output, logs or Redis');
  });

  void test('a wrong CA: REDIS_TLS_FAILED naming redis.tls.ca, exit 1, at once', async (t) => {
    const original = await readFile(h.configPath, 'utf8');
    try {
      await h.editConfig((raw) => {
        raw['redis'] = { ...(raw['redis'] as object), tls: { ca: certs.wrongCa } };
      });
      const t0 = Date.now();
      const res = await h.cli(['status', '--json']);
      assert.equal(res.code, 1, res.stderr);
      const doc = JSON.parse(res.stdout) as { error: { code: string; message: string } };
      assert.equal(doc.error.code, 'REDIS_TLS_FAILED', doc.error.message);
      assert.match(doc.error.message, /redis\.tls\.ca/);
      assert.ok(doc.error.message.includes(certs.wrongCa), doc.error.message);
      t.diagnostic(doc.error.message);
      assert.ok(Date.now() - t0 < 20_000, 'the refusal is not retried until redis.unreachableSeconds');
      assert.ok(!`${res.stdout}${res.stderr}`.includes(password));
    } finally {
      await writeFile(h.configPath, original);
    }
  });

  void test('a wrong password: REDIS_AUTH_FAILED naming redis.password, the wrong one not shown', async (t) => {
    const wrong = 'not-the-password-42';
    const res = await h.cli(['status', '--json'], { REDIS_URL: `rediss://${user}:${wrong}@127.0.0.1:${server.port}` });
    assert.equal(res.code, 1, res.stderr);
    const doc = JSON.parse(res.stdout) as { error: { code: string; message: string } };
    assert.equal(doc.error.code, 'REDIS_AUTH_FAILED', doc.error.message);
    assert.match(doc.error.message, /redis\.password/);
    assert.ok(!`${res.stdout}${res.stderr}`.includes(wrong), 'the wrong password was printed');
    t.diagnostic(doc.error.message);
  });
});
