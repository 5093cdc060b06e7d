/**
 * Issue 9 item 6: every process exits on SIGTERM within a bounded time, also while its Redis is
 * unreachable (a worker used to ignore SIGTERM twice there). Each long-running command starts as
 * a real process against a closed loopback port or a server that never answers, is seen trying
 * (or serving), gets one SIGTERM, and must exit within `boundMs`, saying that it stops. They run
 * side by side.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { binPath, freePort } from '../support/fleet.ts';

/** From the one SIGTERM to the exit. */
const boundMs = 10_000;
/** Start-up of a tsx process on a loaded 2-core machine, until it shows it is up. */
const startMs = 60_000;

interface Stopped {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stopMs: number;
  readonly stderr: string;
}

/** Starts `vcsa-backup ...args`, waits until stderr matches `ready`, sends SIGTERM once, and times the exit. */
async function startAndTerminate(args: readonly string[], ready: RegExp | Promise<void>): Promise<Stopped> {
  const child = spawn(process.execPath, [binPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LOG_LEVEL: 'debug', REDIS_URL: '' } });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let stderr = '';
  child.stderr.setEncoding('utf8');
  const up = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not show ${ready instanceof RegExp ? String(ready) : "a connection to its Redis"} within ${startMs} ms:\n${stderr}`)), startMs);
    const up = (): void => {
      clearTimeout(timer);
      resolve();
    };
    if (ready instanceof Promise) void ready.then(up);
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
      if (ready instanceof RegExp && ready.test(stderr)) up();
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${args[0]} exited before it was up:\n${stderr}`));
    });
  });
  try {
    await up;
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const t0 = Date.now();
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), boundMs + 20_000);
  const [code, signal] = await exited;
  clearTimeout(killer);
  return { code, signal, stopMs: Date.now() - t0, stderr };
}

void describe('SIGTERM ends every process within a bound, Redis unreachable', { timeout: 300_000 }, () => {
  let dir: string;
  const silent: Server[] = [];
  const sockets = new Set<Socket>();

  /**
   * fleet.yaml whose Redis is `redis`: a closed port (connections refused: workers and the
   * dashboard retry forever, commands give up at once), or a server that accepts and never
   * answers (a wrong port, a stuck proxy: commands wait in the connection's ready check).
   */
  const configFor = async (name: string, redisPort: number): Promise<string> => {
    const path = join(dir, `${name.replace(/\W+/g, '-')}.yaml`);
    const closed = await freePort();
    await writeFile(
      path,
      stringify({
        // Commands would wait an hour for a Redis that went away; SIGTERM must not.
        redis: { url: `redis://127.0.0.1:${redisPort}`, prefix: `sigterm-${process.pid}`, unreachableSeconds: 3600 },
        s3: { bucket: 'vcsa-backups', endpoint: `http://127.0.0.1:${closed}`, forcePathStyle: true, accessKeyId: 'k', secretAccessKey: 's' },
        spool: { dir: join(dir, 'spool'), minFreeMiB: 0 },
        targets: [{ name: 'vc01', profile: 'vcsa-5.5', executor: { type: 'local' }, variables: { ROOT: join(dir, 'nowhere') } }],
      }),
    );
    return path;
  };
  /** A TCP server that takes connections and never says a word; resolves its port and a promise of its first connection. */
  const silentRedis = async (): Promise<{ port: number; contacted: Promise<void> }> => {
    let contact: () => void = () => undefined;
    const contacted = new Promise<void>((resolve) => (contact = resolve));
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
      contact();
    });
    silent.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { port: (server.address() as { port: number }).port, contacted };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sigterm-'));
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(silent.map((s) => new Promise((resolve) => s.close(resolve))));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const cases: { name: string; args: string[]; redis: 'closed' | 'silent'; ready: RegExp | 'contacted'; exit: number; says: RegExp }[] = [
    { name: 'worker (Redis refuses)', args: ['worker'], redis: 'closed', ready: /"msg":"worker started"[\s\S]*redis connection error/, exit: 0, says: /"msg":"worker stopped"/ },
    { name: 'worker (Redis silent)', args: ['worker'], redis: 'silent', ready: /"msg":"worker started"/, exit: 0, says: /"msg":"worker stopped"/ },
    { name: 'dashboard (Redis refuses)', args: ['dashboard', '--port', '0'], redis: 'closed', ready: /dashboard: http:\/\//, exit: 0, says: /"msg":"stopping: / },
    { name: 'schedule (Redis silent)', args: ['schedule'], redis: 'silent', ready: 'contacted', exit: 1, says: /"msg":"stopping: [\s\S]*ABORTED/ },
    { name: 'status (Redis silent)', args: ['status'], redis: 'silent', ready: 'contacted', exit: 1, says: /"msg":"stopping: [\s\S]*ABORTED/ },
    { name: 'run --wait (Redis silent)', args: ['run', '--wait'], redis: 'silent', ready: 'contacted', exit: 1, says: /"msg":"stopping: [\s\S]*ABORTED/ },
  ];
  const results = new Map<string, Stopped>();

  void test('all started side by side, each given one SIGTERM', async () => {
    const settled = await Promise.allSettled(
      cases.map(async (c) => {
        const server = c.redis === 'silent' ? await silentRedis() : undefined;
        const path = await configFor(c.name, server?.port ?? (await freePort()));
        const ready = c.ready === 'contacted' ? server!.contacted : c.ready;
        results.set(c.name, await startAndTerminate([...c.args, '--config', path], ready));
      }),
    );
    const failed = settled.flatMap((s, i) => (s.status === 'rejected' ? [`${cases[i]?.name}: ${String(s.reason)}`] : []));
    assert.deepEqual(failed, []);
  });

  for (const c of cases) {
    void test(`${c.name}: exits ${c.exit} within ${boundMs / 1000} s of one SIGTERM, saying it stops`, () => {
      const r = results.get(c.name);
      assert.ok(r, 'it ran');
      assert.equal(r.signal, null, `killed by ${String(r.signal)} after ${r.stopMs} ms: it ignored SIGTERM\n${r.stderr.slice(-3000)}`);
      assert.ok(r.stopMs <= boundMs, `took ${r.stopMs} ms\n${r.stderr.slice(-3000)}`);
      assert.equal(r.code, c.exit, r.stderr.slice(-3000));
      assert.match(r.stderr, c.says);
      assert.doesNotMatch(r.stderr, /^\s+at .*\.(ts|js):\d+/m, 'no stack trace');
    });
  }
});
