import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { loadConfig, parseConfig } from '../../src/config/load.ts';
import { Secret } from '../../src/config/secret.ts';
import { ConfigError } from '../../src/errors.ts';
import { leaseReplicas } from '../../src/locks/fleet-lease.ts';
import { createSimAppliance, type SimAppliance } from '../../src/sim/appliance.ts';
import { runCli, type CliResult } from '../support/fleet.ts';

type Raw = Record<string, unknown> & { targets: Record<string, unknown>[] };

function base(): Raw {
  return {
    s3: { bucket: 'vcsa-backups', endpoint: 'http://127.0.0.1:9', forcePathStyle: true, accessKeyId: 'AKIDINLINE', secretAccessKey: 'inline-secret' },
    targets: [{ name: 'vc01', profile: 'vcsa-5.5', executor: { type: 'local' }, variables: { ROOT: '/tmp/nowhere' } }],
  };
}

/** The issues a config gets, or [] when it is valid. */
function issuesOf(raw: unknown, env: NodeJS.ProcessEnv = {}): readonly string[] {
  try {
    parseConfig(raw, { env });
    return [];
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'CONFIG_INVALID');
    assert.equal(err.permanent, true);
    return err.issues;
  }
}

function assertIssue(raw: unknown, pattern: RegExp, env: NodeJS.ProcessEnv = {}): void {
  const issues = issuesOf(raw, env);
  assert.ok(issues.some((i) => pattern.test(i)), `no issue matches ${pattern}; got:\n${issues.join('\n')}`);
}

void describe('config validation: field-named messages', () => {
  void test('a valid config loads, with defaults filled in', () => {
    assert.deepEqual(issuesOf(base()), []);
    const config = parseConfig(base(), { env: {} });
    assert.equal(config.quiesce.maxConcurrent, 1);
    assert.equal(config.schedule.tz, 'UTC');
    assert.ok(config.s3.secretAccessKey instanceof Secret);
    assert.equal(JSON.stringify(config.s3).includes('inline-secret'), false);
  });

  void test('redis.leaseReplicas: 1 with sentinels, 0 without, as set when set; bounded', () => {
    const withRedis = (redis: Record<string, unknown>): Raw => ({ ...base(), redis });
    const sentinels = [{ host: '127.0.0.1', port: 26379 }];
    assert.equal(leaseReplicas(parseConfig(base(), { env: {} })), 0);
    assert.equal(leaseReplicas(parseConfig(withRedis({ sentinels, name: 'mymaster' }), { env: {} })), 1);
    assert.equal(leaseReplicas(parseConfig(withRedis({ sentinels, name: 'mymaster', leaseReplicas: 0 }), { env: {} })), 0);
    assert.equal(leaseReplicas(parseConfig(withRedis({ leaseReplicas: 2 }), { env: {} })), 2);
    assertIssue(withRedis({ leaseReplicas: -1 }), /^redis\.leaseReplicas: /);
    assertIssue(withRedis({ leaseReplicas: 1.5 }), /^redis\.leaseReplicas: /);
  });

  void test('a missing required field names its path', () => {
    const raw = base();
    raw.targets.push({ name: 'vc02', profile: 'vcsa-5.5', executor: { type: 'ssh', hostKey: `SHA256:${'A'.repeat(43)}`, password: 'pw' } });
    assertIssue(raw, /^targets\[1\]\.executor\.host: required$/);
    const noBucket = base();
    noBucket['s3'] = { endpoint: 'http://127.0.0.1:9' };
    assertIssue(noBucket, /^s3\.bucket: required$/);
    assertIssue({ s3: { bucket: 'vcsa-backups' } }, /^targets: required$/);
  });

  void test('an unknown profile lists the known ones', () => {
    const raw = base();
    raw.targets[0]!['profile'] = 'vcsa-9';
    assertIssue(raw, /^targets\[0\]\.profile: unknown profile "vcsa-9"; use one of .*vcsa-5\.5/);
  });

  void test('an unknown field, at any depth, is named', () => {
    const raw = base();
    raw['quiesce'] = { maxConcurent: 2 };
    raw.targets[0]!['hostname'] = 'x';
    const issues = issuesOf(raw);
    assert.ok(issues.includes('quiesce.maxConcurent: unknown field; remove it or check its spelling'), issues.join('\n'));
    assert.ok(issues.includes('targets[0].hostname: unknown field; remove it or check its spelling'), issues.join('\n'));
  });

  void test('a target name with a colon, or all digits, is refused', () => {
    const raw = base();
    raw.targets[0]!['name'] = 'vc:01';
    assertIssue(raw, /^targets\[0\]\.name: .*no colons/);
    raw.targets[0]!['name'] = '1234';
    assertIssue(raw, /^targets\[0\]\.name: must not be all digits/);
  });

  void test('duplicate target names are refused', () => {
    const raw = base();
    raw.targets.push({ ...raw.targets[0] });
    assertIssue(raw, /^targets\[1\]\.name: "vc01" is already used by targets\[0\]/);
  });

  void test('a secret from a missing env var or file names the field and never the value', () => {
    const raw = base();
    raw['s3'] = { bucket: 'vcsa-backups', accessKeyId: { env: 'TEST_NO_SUCH_VAR_X1' }, secretAccessKey: { file: '/nonexistent/secret' } };
    const issues = issuesOf(raw);
    assert.ok(issues.some((i) => /^s3\.accessKeyId: environment variable TEST_NO_SUCH_VAR_X1 is not set/.test(i)), issues.join('\n'));
    assert.ok(issues.some((i) => /^s3\.secretAccessKey: cannot read secret file \/nonexistent\/secret \(ENOENT\)/.test(i)), issues.join('\n'));
    const ok = parseConfig({ ...raw, s3: { bucket: 'vcsa-backups', accessKeyId: { env: 'K' }, secretAccessKey: { env: 'S' } } }, { env: { K: 'key-value-1', S: 'secret-value-1' } });
    assert.equal(ok.s3.secretAccessKey?.reveal(), 'secret-value-1');
    assert.equal(JSON.stringify(ok).includes('secret-value-1'), false);
  });

  void test('a variable the profile does not have is refused, listing the ones it has', () => {
    const raw = base();
    raw.targets[0]!['variables'] = { VPG_BN: '/x' };
    assertIssue(raw, /^targets\[0\]\.variables\.VPG_BN: profile vcsa-5\.5 has no such variable; it has .*VPG_BIN/);
  });

  void test('a bad cron pattern or time zone is refused, for the fleet and per target', () => {
    assertIssue({ ...base(), schedule: { cron: '61 2 * * *', tz: 'UTC' } }, /^schedule\.cron: "61 2 \* \* \*" is not a valid cron pattern/);
    assertIssue({ ...base(), schedule: { cron: '0 2 * *' } }, /^schedule\.cron: expected 5 fields/);
    assertIssue({ ...base(), schedule: { cron: '0 2 * * *', tz: 'Mars/Olympus' } }, /^schedule\.tz: unknown time zone "Mars\/Olympus"/);
    const raw = base();
    raw.targets[0]!['schedule'] = { cron: '0 2 * * * * *', tz: 'Asia/Kolkata' };
    assertIssue(raw, /^targets\[0\]\.schedule\.cron: expected 5 fields/);
    // Six fields are fine when the seconds field fires once a minute at most.
    assert.deepEqual(issuesOf({ ...base(), schedule: { cron: '30 */5 * * * *', tz: 'Asia/Kolkata' } }), []);
    assertIssue({ ...base(), schedule: { cron: '*/5 * * * * *', tz: 'Asia/Kolkata' } }, /^schedule\.cron: "\*\/5 \* \* \* \* \*" fires 12 times a minute; fire at most once a minute/);
    assertIssue({ ...base(), schedule: { cron: '* * * * * *' } }, /^schedule\.cron: .* fires 60 times a minute/);
    assert.deepEqual(issuesOf({ ...base(), schedule: { cron: '@daily', tz: 'Europe/Berlin' } }), []);
  });

  void test('all problems are reported at once', () => {
    const raw = base();
    raw.targets[0]!['profile'] = 'nope';
    raw.targets.push({ name: 'vc01', profile: 'vcsa-5.5', executor: { type: 'local' } });
    raw['schedule'] = { cron: '0 2 * * *', tz: 'Nowhere/Land' };
    const issues = issuesOf(raw);
    assert.equal(issues.length, 3, issues.join('\n'));
    assert.match(issues.join('\n'), /schedule\.tz: .*\n.*targets\[0\]\.profile: .*\n.*targets\[1\]\.name: /);
  });

  void test('YAML that does not parse is reported with line and column', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'config-yaml-'));
    try {
      const path = join(dir, 'fleet.yaml');
      await writeFile(path, 's3:\n  bucket: vcsa\ntargets:\n  - name: vc01\n   profile: [unclosed\n');
      assert.throws(() => loadConfig(path, { env: {} }), (err: unknown) => err instanceof ConfigError && new RegExp(`^${path}:\\d+:\\d+: not valid YAML`).test(err.message));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Invariant 8: bad input exits 2 and stops nothing on the appliance. */
void describe('CLI: bad input exits 2 and touches nothing', () => {
  let dir: string;
  let sim: SimAppliance;
  let auditLog: string;
  let good: Raw;

  const writeConfig = async (name: string, content: string | Raw): Promise<string> => {
    const path = join(dir, name);
    await writeFile(path, typeof content === 'string' ? content : stringify(content));
    return path;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'config-cli-'));
    auditLog = join(dir, 'audit.jsonl');
    sim = await createSimAppliance({ name: `cfg-${process.pid}`, baseDir: join(dir, 'appliances'), auditLog });
    good = {
      s3: { bucket: 'vcsa-backups', endpoint: 'http://127.0.0.1:9', forcePathStyle: true, accessKeyId: 'k', secretAccessKey: 's' },
      spool: { dir: join(dir, 'spool'), minFreeMiB: 0 },
      targets: [{ name: 'vc01', profile: 'vcsa-5.5', executor: { type: 'local' }, variables: { ...sim.variables } }],
    };
  });
  after(async () => {
    await sim?.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  const cases: { name: string; config: () => string | Raw; args?: string[]; env?: NodeJS.ProcessEnv; expect: RegExp }[] = [
    { name: 'not valid YAML', config: () => 's3:\n  bucket: [x\n', expect: /bad-0\.yaml:\d+:\d+: not valid YAML/ },
    {
      name: 'missing executor host',
      config: () => ({ ...good, targets: [...good.targets, { name: 'vc02', profile: 'vcsa-5.5', executor: { type: 'ssh', knownHosts: '/x', password: 'p' } }] }),
      expect: /targets\[1\]\.executor\.host: required/,
    },
    { name: 'unknown field', config: () => ({ ...good, retension: {} }), expect: /retension: unknown field/ },
    {
      name: 'missing secret env var',
      config: () => ({ ...good, s3: { ...(good['s3'] as object), secretAccessKey: { env: 'TEST_UNSET_SECRET_VAR' } } }),
      expect: /s3\.secretAccessKey: environment variable TEST_UNSET_SECRET_VAR is not set/,
    },
    { name: 'unknown --target', config: () => good, args: ['--target', 'vc99'], expect: /--target: no target named "vc99".*known targets: vc01/ },
    { name: 'missing --target', config: () => good, args: [], expect: /--target: required/ },
  ];

  const results: CliResult[] = [];
  let auditBefore = '';
  before(async () => {
    auditBefore = await readFile(auditLog, 'utf8');
    // The invocations are independent: run them together to keep the file fast.
    results.push(
      ...(await Promise.all(
        cases.map(async (c, i) => {
          const path = await writeConfig(`bad-${i}.yaml`, c.config());
          return runCli(['backup', ...(c.args ?? ['--target', 'vc01']), '--config', path, '--json'], { TEST_UNSET_SECRET_VAR: '' });
        }),
      )),
    );
  });

  cases.forEach((c, i) => {
    void test(`backup with ${c.name}: exit 2, the field named`, () => {
      const res = results[i]!;
      assert.equal(res.code, 2, res.stderr);
      assert.match(res.stderr, c.expect);
      const doc = JSON.parse(res.stdout) as { error: { code: string; message: string } };
      assert.match(doc.error.code, /^(CONFIG_INVALID|USAGE)$/);
      assert.match(doc.error.message, c.expect);
    });
  });

  void test('no service was stopped by any of them', async () => {
    assert.equal(results.length, cases.length);
    assert.equal(await readFile(auditLog, 'utf8'), auditBefore, 'a service changed state');
    assert.ok(await sim.servicesRunning());
  });

  void test('a missing config file: exit 2, says how to pass one', async () => {
    const res = await runCli(['backup', '--target', 'vc01', '--config', join(dir, 'nope.yaml')]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /--config: .*nope\.yaml does not exist/);
  });
});
