/**
 * Issue 9, as a hostile or careless operator would try it: malformed configs and command lines
 * through the real CLI, each with the exit code it must get (2: bad input), the field its message
 * must name (and, where the message can say it, the fix), and the simulated appliance's audit log
 * proving that no service was stopped. Most cases run in this process (runCliInProcess: the same
 * `main` as bin/vcsa-backup.js, milliseconds each); the cases whose failure was a process that
 * never exits (a worker or dashboard that printed the right message and hung on what it had
 * already opened) run as real processes, in parallel, and must exit within a bound.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.ts';
import { maxExpandedNodes } from '../../src/config/yaml.ts';
import { createSimAppliance, type SimAppliance } from '../../src/sim/appliance.ts';
import { runCliInProcess, type InProcessResult } from '../support/cli-in-process.ts';
import { freePort, runCli } from '../support/fleet.ts';

type Raw = Record<string, unknown> & { targets: Record<string, unknown>[]; s3: Record<string, unknown> };

/** A secret every config carries inline: no output of any case may show it. */
const s3Secret = 'corpus-s3-secret-Zq9xW2';
const hostKey = `SHA256:${'A'.repeat(43)}`;

interface Case {
  /** What the operator did. */
  readonly name: string;
  /** The item of issue 9 it belongs to (0: the basics every command line gets). */
  readonly item: number;
  /** The command line, before `--config PATH --json` (left out with `noConfig`). */
  readonly args: readonly string[];
  /** fleet.yaml: an edit of the good config, or YAML text built from it; default: the good one. */
  readonly config?: (good: Raw) => Raw | string;
  readonly env?: Readonly<Record<string, string>>;
  readonly noConfig?: boolean;
  readonly exit: 1 | 2;
  /** The error code in the --json document. */
  readonly code: 'CONFIG_INVALID' | 'USAGE' | 'S3_PREFLIGHT_FAILED';
  /** The field (or file:line) the message must name, at the start of one of its lines. */
  readonly field: RegExp;
  /** What the message must say about fixing it. */
  readonly fix?: RegExp;
  /** Runs as a real process: the point is that it exits (within `boundMs`). */
  readonly child?: true;
}

const edit = (f: (raw: Raw) => void) => (good: Raw): Raw => {
  const raw = structuredClone(good);
  f(raw);
  return raw;
};
const target0 = (raw: Raw): Record<string, unknown> => raw.targets[0]!;
const sshTarget = (extra: Record<string, unknown>) =>
  edit((raw) => {
    raw.targets.push({ name: 'vc02', profile: 'vcsa-5.5', executor: { type: 'ssh', host: '127.0.0.1', hostKey, password: 'pw', ...extra } });
  });
/** The good config as YAML with one line replaced. */
const yamlWith = (from: RegExp, to: string) => (good: Raw): string => {
  const text = stringify(good);
  assert.match(text, from, 'the corpus edits a line that is there');
  return text.replace(from, to);
};

/**
 * A billion laughs in YAML: each level aliases the one before it ten times; the sixth passes the
 * expanded-size limit. Its line is what the message must name.
 */
function aliasBomb(good: Raw): string {
  const levels = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (const name of ['b', 'c', 'd', 'e', 'f', 'g']) {
    const prev = String.fromCharCode(name.charCodeAt(0) - 1);
    levels.push(`${name}: &${name} [${Array(10).fill(`*${prev}`).join(', ')}]`);
  }
  return `${stringify({ ...good, targets: undefined })}bomb:\n${levels.map((l) => `  ${l}\n`).join('')}${stringify({ targets: good.targets })}`;
}
const bombLine = (good: Raw): number => {
  assert.ok(10 ** 6 > maxExpandedNodes && 10 ** 5 < maxExpandedNodes, 'the bomb passes the limit at its sixth level');
  return aliasBomb(good).split('\n').findIndex((l) => l.startsWith('  f: &f')) + 1;
};

/** The kinds of resource that keep a Node process alive, counted. */
function openHandles(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo()) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}

/**
 * Waits until no kind of resource is above `before` (sockets take a tick or two to close). The
 * 30 s cap only bounds a failing case: a handle left open stays open.
 */
async function leftNothingOpen(before: Map<string, number>, what: string): Promise<void> {
  const extra = (): string[] => [...openHandles()].filter(([kind, n]) => n > (before.get(kind) ?? 0)).map(([kind, n]) => `${kind} ×${n - (before.get(kind) ?? 0)}`);
  const deadline = Date.now() + 30_000;
  while (extra().length > 0 && Date.now() < deadline) await delay(50);
  assert.deepEqual(extra(), [], `${what}: still open after the command returned (the process would not exit)`);
}

const cases: readonly Case[] = [
  // Item 2: S3 settings, refused at load instead of after the appliance was stopped.
  { item: 2, name: 'an ftp:// S3 endpoint', args: ['backup', '--target', 'vc01'], config: edit((r) => (r.s3['endpoint'] = 'ftp://127.0.0.1:21')), exit: 2, code: 'CONFIG_INVALID', field: /^s3\.endpoint: /m, fix: /http:\/\/ or https:\/\// },
  { item: 2, name: 'an S3 endpoint that is no URL', args: ['backup', '--target', 'vc01'], config: edit((r) => (r.s3['endpoint'] = 's3 dot example dot net')), exit: 2, code: 'CONFIG_INVALID', field: /^s3\.endpoint: /m },
  { item: 2, name: 'a bucket name with capitals and "_"', args: ['backup', '--target', 'vc01'], config: edit((r) => (r.s3['bucket'] = 'My_Backups')), exit: 2, code: 'CONFIG_INVALID', field: /^s3\.bucket: /m, fix: /lowercase letters, digits/ },
  { item: 2, name: 'a bucket that looks like an IP address', args: ['restore', '--target', 'vc01', '--yes'], config: edit((r) => (r.s3['bucket'] = '10.1.2.3')), exit: 2, code: 'CONFIG_INVALID', field: /^s3\.bucket: /m },
  { item: 2, name: 'no bucket', args: ['backup', '--target', 'vc01'], config: edit((r) => delete r.s3['bucket']), exit: 2, code: 'CONFIG_INVALID', field: /^s3\.bucket: required$/m },
  { item: 2, name: 'a prefix with "//"', args: ['backup', '--target', 'vc01'], config: edit((r) => (r.s3['prefix'] = 'fleet//a')), exit: 2, code: 'CONFIG_INVALID', field: /^s3\.prefix: /m, fix: /empty path segment/ },
  { item: 2, name: 'a prefix starting with "/"', args: ['restore', '--target', 'vc01', '--yes'], config: edit((r) => (r.s3['prefix'] = '/fleet')), exit: 2, code: 'CONFIG_INVALID', field: /^s3\.prefix: /m, fix: /write "fleet\/a"/ },
  { item: 2, name: 'a prefix with ".."', args: ['verify', '--target', 'vc01'], config: edit((r) => (r.s3['prefix'] = 'fleet/../other')), exit: 2, code: 'CONFIG_INVALID', field: /^s3\.prefix: /m },
  { item: 2, name: 'a region with a space', args: ['backup', '--target', 'vc01'], config: edit((r) => (r.s3['region'] = 'US East')), exit: 2, code: 'CONFIG_INVALID', field: /^s3\.region: /m },
  {
    item: 2,
    name: 'an unknown YAML tag (!!js/function) as the bucket',
    args: ['backup', '--target', 'vc01'],
    config: yamlWith(/bucket: vcsa-backups/, "bucket: !!js/function 'function () { return 1 }'"),
    exit: 2,
    code: 'CONFIG_INVALID',
    field: /case-\d+\.yaml:\d+:\d+: not valid YAML/m,
    fix: /remove the tag/,
  },
  { item: 2, name: 'a custom YAML tag (!Ref)', args: ['schedule'], config: yamlWith(/bucket: vcsa-backups/, 'bucket: !Ref BackupBucket'), exit: 2, code: 'CONFIG_INVALID', field: /case-\d+\.yaml:\d+:\d+: not valid YAML/m, fix: /remove the tag/ },
  { item: 2, name: 'a bucket given as a YAML list', args: ['backup', '--target', 'vc01'], config: edit((r) => (r.s3['bucket'] = ['a', 'b'])), exit: 2, code: 'CONFIG_INVALID', field: /^s3\.bucket: /m },
  { item: 2, name: 'an S3 endpoint nobody listens on: preflight fails before any stop', args: ['backup', '--target', 'vc01'], exit: 1, code: 'S3_PREFLIGHT_FAILED', field: /S3/ },

  // Item 5: numbers without bounds.
  { item: 5, name: 'timeouts.dumpSeconds past Node\'s timer limit', args: ['backup', '--target', 'vc01'], config: edit((r) => (target0(r)['timeouts'] = { dumpSeconds: 3_000_000 })), exit: 2, code: 'CONFIG_INVALID', field: /^targets\[0\]\.timeouts\.dumpSeconds: /m, fix: /24\.8 days.*got 3000000/ },
  { item: 5, name: 'quiesce.watchdogIntervalSeconds: 1e7', args: ['worker'], config: edit((r) => (r['quiesce'] = { watchdogIntervalSeconds: 1e7 })), exit: 2, code: 'CONFIG_INVALID', field: /^quiesce\.watchdogIntervalSeconds: /m, fix: /at most once a second.*got 10000000/ },
  { item: 5, name: 'quiesce.leaseSeconds: 0', args: ['worker'], config: edit((r) => (r['quiesce'] = { leaseSeconds: 0 })), exit: 2, code: 'CONFIG_INVALID', field: /^quiesce\.leaseSeconds: /m, fix: /got 0/ },
  { item: 5, name: 'quiesce.maxConcurrent: -1', args: ['run', '--target', 'vc01'], config: edit((r) => (r['quiesce'] = { maxConcurrent: -1 })), exit: 2, code: 'CONFIG_INVALID', field: /^quiesce\.maxConcurrent: /m },
  { item: 5, name: 'worker.concurrency: 1.5', args: ['worker'], config: edit((r) => (r['worker'] = { concurrency: 1.5 })), exit: 2, code: 'CONFIG_INVALID', field: /^worker\.concurrency: /m, fix: /integer/ },
  { item: 5, name: 'worker.attempts as a word', args: ['worker'], config: edit((r) => (r['worker'] = { attempts: 'five' })), exit: 2, code: 'CONFIG_INVALID', field: /^worker\.attempts: /m, fix: /got "five"/ },
  { item: 5, name: 'compression.level: 10', args: ['backup', '--target', 'vc01'], config: edit((r) => (r['compression'] = { level: 10 })), exit: 2, code: 'CONFIG_INVALID', field: /^compression\.level: /m },
  { item: 5, name: 'timeouts.serviceSeconds: .inf', args: ['backup', '--target', 'vc01'], config: yamlWith(/^(\s+)executor:\n/m, '$1timeouts: { serviceSeconds: .inf }\n$1executor:\n'), exit: 2, code: 'CONFIG_INVALID', field: /^targets\[0\]\.timeouts\.serviceSeconds: /m },
  { item: 5, name: 'quiesce.waitSeconds: .nan', args: ['run', '--wait'], config: yamlWith(/^targets:/m, 'quiesce: { waitSeconds: .nan }\ntargets:'), exit: 2, code: 'CONFIG_INVALID', field: /^quiesce\.waitSeconds: /m },
  { item: 5, name: 'an SSH port of 70000', args: ['backup', '--target', 'vc02'], config: sshTarget({ port: 70000 }), exit: 2, code: 'CONFIG_INVALID', field: /^targets\[1\]\.executor\.port: /m, fix: /TCP port/ },
  { item: 5, name: 'notify.webhook.timeoutSeconds: 1e9', args: ['worker'], config: edit((r) => (r['notify'] = { webhook: { url: 'http://127.0.0.1:9/hook', timeoutSeconds: 1e9 } })), exit: 2, code: 'CONFIG_INVALID', field: /^notify\.webhook\.timeoutSeconds: /m },
  { item: 5, name: 'retention.keepLast: 0', args: ['prune', '--dry-run'], config: edit((r) => (r['retention'] = { keepLast: 0 })), exit: 2, code: 'CONFIG_INVALID', field: /^retention\.keepLast: /m },
  { item: 5, name: 's3.partSizeMiB: 1 (under S3\'s 5 MiB)', args: ['backup', '--target', 'vc01'], config: edit((r) => (r.s3['partSizeMiB'] = 1)), exit: 2, code: 'CONFIG_INVALID', field: /^s3\.partSizeMiB: /m, fix: /5 MiB to 5 GiB/ },

  // Item 6: hangs and crashes. The process cases must exit, not only print.
  { item: 6, name: 'worker with an unset notify.webhook.url env var', args: ['worker'], config: edit((r) => (r['notify'] = { webhook: { url: { env: 'CORPUS_UNSET_WEBHOOK' } } })), exit: 2, code: 'CONFIG_INVALID', field: /^notify\.webhook\.url: environment variable CORPUS_UNSET_WEBHOOK is not set/m, child: true },
  { item: 6, name: 'dashboard --port 99999', args: ['dashboard', '--port', '99999'], exit: 2, code: 'USAGE', field: /^--port: /m, fix: /0 to 65535/ },
  { item: 6, name: "dashboard --host 'not a host!'", args: ['dashboard', '--host', 'not a host!'], exit: 2, code: 'CONFIG_INVALID', field: /^--host: /m, fix: /--host 127\.0\.0\.1/, child: true },
  { item: 6, name: 'dashboard --port with an empty value', args: ['dashboard', '--port='], exit: 2, code: 'USAGE', field: /^--port: /m },
  { item: 6, name: 'dashboard --port -1', args: ['dashboard', '--port=-1'], exit: 2, code: 'USAGE', field: /^--port: /m },
  { item: 6, name: 'dashboard on a port already in use', args: ['dashboard', '--port', '{busyPort}'], exit: 2, code: 'CONFIG_INVALID', field: /^--port: /m, fix: /in use; choose another port/, child: true },
  {
    item: 6,
    name: 'dashboard --host on an address this machine does not have',
    args: ['dashboard', '--host', '192.0.2.1', '--port', '0', '--insecure-no-auth'],
    exit: 2,
    code: 'CONFIG_INVALID',
    field: /^--host: 192\.0\.2\.1 is not an address of this machine/m,
  },
  { item: 6, name: 'redis.tls.ca that cannot be read', args: ['status'], config: edit((r) => (r['redis'] = { ...(r['redis'] as object), tls: { ca: '/nonexistent/ca.pem' } })), exit: 2, code: 'CONFIG_INVALID', field: /^redis\.tls\.ca: cannot read \/nonexistent\/ca\.pem/m },
  { item: 6, name: 'demo --count 100000', args: ['demo', '--count', '100000', '--json'], noConfig: true, exit: 2, code: 'USAGE', field: /^--count: expected an integer from 1 to 50/m },
  { item: 6, name: 'simulate --count 0', args: ['simulate', '--count', '0', '--out', '/nonexistent/sim', '--json'], noConfig: true, exit: 2, code: 'USAGE', field: /^--count: /m },
  { item: 6, name: 'spool.dir under /proc (mkdir hung)', args: ['worker'], config: edit((r) => (r['spool'] = { dir: '/proc/vcsa-spool' })), exit: 2, code: 'CONFIG_INVALID', field: /^spool\.dir: /m, fix: /\/var\/spool\/vcsa-backup/ },
  { item: 6, name: 'spool.dir under /sys', args: ['backup', '--target', 'vc01'], config: edit((r) => (r['spool'] = { dir: '/sys//kernel/spool' })), exit: 2, code: 'CONFIG_INVALID', field: /^spool\.dir: /m },
  { item: 6, name: '--log-level bogus', args: ['backup', '--target', 'vc01', '--log-level', 'bogus'], exit: 2, code: 'USAGE', field: /^--log-level: /m, fix: /use one of .*debug/ },
  { item: 6, name: 'LOG_LEVEL=bogus (crashed with a stack)', args: ['worker'], env: { LOG_LEVEL: 'bogus' }, exit: 2, code: 'USAGE', field: /^LOG_LEVEL \(environment\): /m },
  { item: 6, name: 'a YAML alias bomb', args: ['schedule'], config: aliasBomb, exit: 2, code: 'CONFIG_INVALID', field: /case-\d+\.yaml:{bombLine}:\d+: aliases here expand the document past 500,000 values/m },
  { item: 6, name: 'a YAML alias inside its own anchor', args: ['backup', '--target', 'vc01'], config: yamlWith(/^targets:/m, 'loop: &loop [1, *loop]\ntargets:'), exit: 2, code: 'CONFIG_INVALID', field: /case-\d+\.yaml:\d+:\d+: /m },
  { item: 6, name: 'nesting deeper than any config needs', args: ['backup', '--target', 'vc01'], config: yamlWith(/^targets:/m, `deep: ${'['.repeat(100)}${']'.repeat(100)}\ntargets:`), exit: 2, code: 'CONFIG_INVALID', field: /case-\d+\.yaml:\d+:\d+: nested deeper than 64 levels/m },
  { item: 6, name: 'REDIS_URL="not a url"', args: ['worker'], env: { REDIS_URL: 'not a url' }, exit: 2, code: 'CONFIG_INVALID', field: /^REDIS_URL \(environment, overrides redis\.url\): not a URL/m },
  { item: 6, name: 'REDIS_URL with an http scheme', args: ['status'], env: { REDIS_URL: 'http://127.0.0.1:6379' }, exit: 2, code: 'CONFIG_INVALID', field: /^REDIS_URL /m, fix: /redis:\/\/host:port/ },
  { item: 6, name: 'redis.url with a path that is no database number', args: ['run', '--target', 'vc01'], config: edit((r) => (r['redis'] = { url: 'redis://127.0.0.1:6379/queues' })), exit: 2, code: 'CONFIG_INVALID', field: /^redis\.url: /m, fix: /database number/ },
  { item: 6, name: 'verify.scratchUrl: garbage', args: ['verify', '--target', 'vc01'], config: edit((r) => (r['verify'] = { scratchUrl: 'garbage' })), exit: 2, code: 'CONFIG_INVALID', field: /^verify\.scratchUrl: /m, fix: /postgres:\/\// },

  // Item 7: aliases are fine, their expansion is capped (the bomb above); see also the 1,000-target test below.

  // Item 8: accepted silently before.
  { item: 8, name: 'a cron firing every second', args: ['schedule'], config: edit((r) => (r['schedule'] = { cron: '* * * * * *', tz: 'UTC' })), exit: 2, code: 'CONFIG_INVALID', field: /^schedule\.cron: /m, fix: /at most once a minute/ },
  { item: 8, name: 'a per-target cron every 10 seconds', args: ['schedule'], config: edit((r) => (target0(r)['schedule'] = { cron: '*/10 * * * * *' })), exit: 2, code: 'CONFIG_INVALID', field: /^targets\[0\]\.schedule\.cron: /m, fix: /fires 6 times a minute/ },
  { item: 8, name: 'an unknown time zone', args: ['schedule'], config: edit((r) => (r['schedule'] = { cron: '0 2 * * *', tz: 'Mars/Olympus' })), exit: 2, code: 'CONFIG_INVALID', field: /^schedule\.tz: /m, fix: /IANA name/ },
  { item: 8, name: 'backup --target twice', args: ['backup', '--target', 'vc01', '--target', 'vc02'], exit: 2, code: 'USAGE', field: /^--target: given more than once/m },
  { item: 8, name: 'restore --target twice', args: ['restore', '--target', 'vc01', '--target', 'vc02', '--yes'], exit: 2, code: 'USAGE', field: /^--target: given more than once/m },
  { item: 8, name: 'verify --backup twice', args: ['verify', '--target', 'vc01', '--backup', 'latest', '--backup', '20260101T000000.000Z'], exit: 2, code: 'USAGE', field: /^--backup: given more than once/m },
  { item: 8, name: '--config twice', args: ['status', '--config', '/etc/vcsa-backup/fleet.yaml'], exit: 2, code: 'USAGE', field: /^--config: given more than once/m },
  { item: 8, name: 'a garbage SSH privateKey', args: ['schedule'], config: sshTarget({ password: undefined, privateKey: 'not a key at all' }), exit: 2, code: 'CONFIG_INVALID', field: /^targets\[1\]\.executor\.privateKey: not a usable private key/m, fix: /OpenSSH or PEM/ },
  { item: 8, name: 'an SSH privateKey file that is not there', args: ['worker'], config: sshTarget({ password: undefined, privateKey: { file: '/nonexistent/id_ed25519' } }), exit: 2, code: 'CONFIG_INVALID', field: /^targets\[1\]\.executor\.privateKey: cannot read secret file/m },
  { item: 8, name: 'dashboard with an unset dashboard.token env var', args: ['dashboard', '--port', '0'], config: edit((r) => (r['dashboard'] = { token: { env: 'CORPUS_UNSET_TOKEN' } })), exit: 2, code: 'CONFIG_INVALID', field: /^dashboard\.token: environment variable CORPUS_UNSET_TOKEN is not set/m },
  { item: 8, name: 'dashboard with an unset basicAuth password env var', args: ['dashboard', '--port', '0'], config: edit((r) => (r['dashboard'] = { basicAuth: { user: 'ops', password: { env: 'CORPUS_UNSET_PW' } } })), exit: 2, code: 'CONFIG_INVALID', field: /^dashboard\.basicAuth\.password: /m },
  { item: 8, name: 'dashboard on 0.0.0.0 without auth', args: ['dashboard', '--host', '0.0.0.0', '--port', '0'], exit: 2, code: 'CONFIG_INVALID', field: /^--host: /m, fix: /--insecure-no-auth/ },

  // The basics: what every command line gets.
  { item: 0, name: 'an unknown command', args: ['bakup'], noConfig: true, exit: 2, code: 'USAGE', field: /unknown command "bakup"/ },
  { item: 0, name: 'an unknown option', args: ['backup', '--targt', 'vc01'], exit: 2, code: 'USAGE', field: /'--targt'/ },
  { item: 0, name: 'an unknown --target', args: ['restore', '--target', 'vc99', '--yes'], exit: 2, code: 'CONFIG_INVALID', field: /^--target: no target named "vc99"/m, fix: /known targets: vc01/ },
  { item: 0, name: 'restore without --yes and no terminal', args: ['restore', '--target', 'vc01'], exit: 2, code: 'USAGE', field: /^--yes: required/m },
  { item: 0, name: 'lease release without --force', args: ['lease', 'release', '--target', 'vc01'], exit: 2, code: 'USAGE', field: /^--force: required/m },
  { item: 0, name: 'a config that does not exist', args: ['backup', '--target', 'vc01', '--config', '/nonexistent/fleet.yaml', '--json'], noConfig: true, exit: 2, code: 'CONFIG_INVALID', field: /^--config: \/nonexistent\/fleet\.yaml does not exist/m },
  { item: 0, name: 'a config that is a directory', args: ['backup', '--target', 'vc01', '--config', '/tmp', '--json'], noConfig: true, exit: 2, code: 'CONFIG_INVALID', field: /^--config: cannot read \/tmp/m },
  { item: 0, name: 'an empty config', args: ['backup', '--target', 'vc01'], config: () => '', exit: 2, code: 'CONFIG_INVALID', field: /^targets: required$/m },
  { item: 0, name: 'a misspelt field', args: ['backup', '--target', 'vc01'], config: edit((r) => (r['retension'] = { keepLast: 3 })), exit: 2, code: 'CONFIG_INVALID', field: /^retension: unknown field/m, fix: /check its spelling/ },
  { item: 0, name: 'an SSH target without hostKey', args: ['backup', '--target', 'vc02'], config: sshTarget({ hostKey: undefined }), exit: 2, code: 'CONFIG_INVALID', field: /^targets\[1\]\.executor\.hostKey: required/m, fix: /ssh-keygen -lf/ },
  { item: 0, name: 'a target name with a colon', args: ['schedule'], config: edit((r) => (target0(r)['name'] = 'vc:01')), exit: 2, code: 'CONFIG_INVALID', field: /^targets\[0\]\.name: /m, fix: /no colons/ },
  { item: 0, name: 'an unknown profile', args: ['backup', '--target', 'vc01'], config: edit((r) => (target0(r)['profile'] = 'vcsa-9')), exit: 2, code: 'CONFIG_INVALID', field: /^targets\[0\]\.profile: unknown profile "vcsa-9"/m, fix: /vcsa-5\.5/ },
];

void describe('input corpus: every malformed config and command line is refused, named, and touches nothing', { timeout: 120_000 }, () => {
  let dir: string;
  let sim: SimAppliance;
  let auditLog: string;
  /** What the appliance's start wrote; every case must leave it as it is. */
  let auditAtStart = '';
  let good: Raw;
  let busy: Server;
  let busyPort = 0;
  const results = new Map<Case, InProcessResult>();
  const childCases = cases.filter((c) => c.child);
  const inProcessCases = cases.filter((c) => !c.child);

  const argsOf = (c: Case, path: string): string[] => {
    const args = c.args.map((a) => a.replace('{busyPort}', String(busyPort)));
    return c.noConfig ? args : [...args, '--config', path, '--json'];
  };
  const configFor = async (c: Case): Promise<string> => {
    const path = join(dir, `case-${cases.indexOf(c)}.yaml`);
    const content = c.config ? c.config(good) : good;
    await writeFile(path, typeof content === 'string' ? content : stringify(content));
    return path;
  };

  before(async () => {
    // Reading process.stdin.isTTY (restore, lease) opens stdin's pipe for good: open it first, so
    // that it is not counted as something a command left open.
    void process.stdin.isTTY;
    dir = await mkdtemp(join(tmpdir(), 'input-corpus-'));
    auditLog = join(dir, 'audit.jsonl');
    sim = await createSimAppliance({ name: `corpus-${process.pid}`, baseDir: join(dir, 'appliances'), auditLog });
    auditAtStart = await readFile(auditLog, 'utf8').catch(() => '');
    // Nothing listens on these: a case that wrongly got past validation fails instead of acting.
    const [redisPort, s3Port] = [await freePort(), await freePort()];
    busy = createServer();
    busy.listen(0, '127.0.0.1');
    await once(busy, 'listening');
    busyPort = (busy.address() as { port: number }).port;
    good = {
      redis: { url: `redis://127.0.0.1:${redisPort}`, prefix: `corpus-${process.pid}` },
      s3: { bucket: 'vcsa-backups', endpoint: `http://127.0.0.1:${s3Port}`, forcePathStyle: true, accessKeyId: 'corpus-key', secretAccessKey: s3Secret },
      spool: { dir: join(dir, 'spool'), minFreeMiB: 0 },
      targets: [{ name: 'vc01', profile: 'vcsa-5.5', executor: { type: 'local' }, variables: { ...sim.variables } }],
    };
  });
  after(async () => {
    busy?.close();
    await sim?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  void test(`${cases.length} cases, covering items 2, 5, 6, 7 and 8 of issue 9`, () => {
    assert.ok(cases.length >= 40);
    for (const item of [2, 5, 6, 8]) assert.ok(cases.some((c) => c.item === item), `item ${item}`);
    assert.equal(new Set(cases.map((c) => c.name)).size, cases.length, 'case names are unique');
  });

  void test('the good config passes validation (the cases fail for their own reason)', async () => {
    const path = join(dir, 'good.yaml');
    await writeFile(path, stringify(good));
    const config = loadConfig(path, { env: {} });
    assert.equal(config.targets[0]?.name, 'vc01');
  });

  void test('in process: each one returns, leaves nothing open behind it, and no service of the appliance changed', async () => {
    for (const c of inProcessCases) {
      const path = await configFor(c);
      const auditBefore = await readFile(auditLog, 'utf8').catch(() => '');
      const handlesBefore = openHandles();
      const res = await runCliInProcess(argsOf(c, path), { ...c.env });
      results.set(c, res);
      // What a process would still be waiting on after main returned (a Redis connection
      // retrying, a listening server, a timer): the hangs of issue 9 item 6.
      await leftNothingOpen(handlesBefore, c.name);
      const auditAfter = await readFile(auditLog, 'utf8').catch(() => '');
      assert.equal(auditAfter, auditBefore, `${c.name}: a service of the appliance changed state`);
    }
  });

  void test('as processes: the ones that used to hang exit on their own (within 90 s on a loaded machine)', async () => {
    const settled = await Promise.allSettled(
      childCases.map(async (c) => {
        const path = await configFor(c);
        results.set(c, await runCli(argsOf(c, path), { ...c.env, LOG_LEVEL: c.env?.['LOG_LEVEL'] ?? 'warn' }, 90_000));
      }),
    );
    const hung = settled.flatMap((s, i) => (s.status === 'rejected' ? [`${childCases[i]?.name}: ${String(s.reason)}`] : []));
    assert.deepEqual(hung, []);
  });

  for (const c of cases) {
    void test(`[item ${c.item}] ${c.name}: exit ${c.exit}, ${c.code}, the field named`, () => {
      const res = results.get(c);
      assert.ok(res, 'the case ran');
      const context = `\nstdout: ${res.stdout}\nstderr: ${res.stderr}`;
      assert.equal(res.code, c.exit, `exit code${context}`);
      const field = new RegExp(c.field.source.replace('{bombLine}', String(bombLine(good))), c.field.flags);
      // One JSON document on stdout (except where the command line could not be read at all).
      if (!c.noConfig || c.args.includes('--json')) {
        const doc = JSON.parse(res.stdout) as { error?: { code: string; message: string }; failures?: { code: string; message: string }[] };
        const error = doc.error ?? doc.failures?.[0];
        assert.ok(error, `an error in the JSON document${context}`);
        assert.equal(error.code, c.code, `error code${context}`);
        assert.match(error.message, field, `the JSON message names the field${context}`);
      }
      // Every line of the message on its own line of stderr, after the command's name.
      const stderr = res.stderr.replace(/^vcsa-backup: /gm, '');
      assert.match(stderr, field, `stderr names the field${context}`);
      if (c.fix) assert.match(stderr, c.fix, `stderr says how to fix it${context}`);
      assert.doesNotMatch(res.stderr, /^\s+at .*\.(ts|js):\d+/m, `no stack trace${context}`);
      assert.equal(`${res.stdout}${res.stderr}`.includes(s3Secret), false, 'the S3 secret was printed');
    });
  }

  void test('no service of the appliance was stopped by any case, and both run', async () => {
    assert.equal(results.size, cases.length);
    assert.equal(await readFile(auditLog, 'utf8').catch(() => ''), auditAtStart, 'the audit log has new entries');
    assert.ok(await sim.servicesRunning());
  });

  void test('a 1,000-target fleet.yaml sharing settings through anchors and aliases loads (item 7)', async () => {
    const path = join(dir, 'aliases.yaml');
    const vars = `{ ROOT: ${sim.variables.ROOT}, SERVICE: ${sim.variables.SERVICE}, INVSVC_DB: ${sim.variables.INVSVC_DB} }`;
    const lines = Array.from({ length: 1000 }, (_, i) =>
      i === 0
        ? `  - { name: vc0000, profile: vcsa-5.5, executor: &local { type: local }, variables: &vars ${vars}, timeouts: &timeouts { dumpSeconds: 7200, serviceSeconds: 300 } }`
        : `  - { name: vc${String(i).padStart(4, '0')}, profile: vcsa-5.5, executor: *local, variables: *vars, timeouts: *timeouts }`,
    );
    await writeFile(path, `${stringify({ ...good, targets: undefined })}targets:\n${lines.join('\n')}\n`);
    const config = loadConfig(path, { env: {} });
    assert.equal(config.targets.length, 1000);
    assert.equal(config.targets[999]?.name, 'vc0999');
    assert.equal(config.targets[999]?.timeouts.dumpSeconds, 7200);
    assert.equal(config.targets[999]?.executor.type, 'local');
  });
});
