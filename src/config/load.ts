import { readFileSync } from 'node:fs';
import { CronExpressionParser } from 'cron-parser';
import type { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { builtinProfiles } from '../profiles/builtin.ts';
import type { Profile } from '../profiles/profile.ts';
import { bindProfile, type ResolvedProfile, runTimePlaceholders, unknownPlaceholders, resolveVariables } from '../profiles/render.ts';
import { AgeIdentities, recipientProblem } from '../crypto/age-keys.ts';
import { configSchema, redisUrlProblem, type ParsedConfig } from './schema.ts';
import { resolveSecret, type Secret, type SecretRef } from './secret.ts';
import { parseConfigYaml } from './yaml.ts';
import { ssh2 } from '../executors/ssh2-module.ts';
import {
  nativeProfileName,
  resolveNativeApi,
  resolveNativeOptions,
  resolveReceiver,
  type NativeApiSettings,
  type NativeReceiverSettings,
  type NativeTargetOptions,
} from '../native/settings.ts';

type ParsedTarget = ParsedConfig['targets'][number];
type ParsedExecutor = NonNullable<ParsedTarget['executor']>;
type Sshless<T> = T extends { type: 'ssh' } ? never : T;

export interface SshExecutorConfig extends Omit<Extract<ParsedExecutor, { type: 'ssh' }>, 'privateKey' | 'passphrase' | 'password'> {
  readonly privateKey?: Secret;
  readonly passphrase?: Secret;
  readonly password?: Secret;
}
/** Shell executors, and the vcsa-native profile's REST API (which runs no commands). */
export type ExecutorSettings = Sshless<ParsedExecutor> | SshExecutorConfig | NativeApiSettings;

export interface TargetConfig extends Omit<ParsedTarget, 'executor' | 'timeouts' | 'api' | 'native'> {
  readonly executor: ExecutorSettings;
  /** vcsa-native targets only. */
  readonly native?: NativeTargetOptions;
  readonly profile: string;
  readonly boundProfile: ResolvedProfile;
  readonly timeouts: { readonly serviceSeconds: number; readonly dumpSeconds: number; readonly restoreSeconds: number };
}

export interface S3Config extends Omit<ParsedConfig['s3'], 'accessKeyId' | 'secretAccessKey' | 'sessionToken'> {
  readonly accessKeyId?: Secret;
  readonly secretAccessKey?: Secret;
  readonly sessionToken?: Secret;
}

export interface EncryptionConfig {
  /** age X25519 public keys (age1…) new backups are encrypted to; none: the passphrase is used. */
  readonly recipients: readonly string[];
  /** Encrypts new backups when there are no recipients (age scrypt); tried first when decrypting. */
  readonly passphrase?: Secret;
  /** scrypt's log2 N for new passphrase-encrypted backups. */
  readonly passphraseWorkFactor: number;
  /** Tried in order after `passphrase` when decrypting older backups. */
  readonly previousPassphrases: readonly Secret[];
  /** age identities, read only when restore, verify or rekey decrypt (never by workers). */
  readonly identities: AgeIdentities;
}

type ParsedRedis = ParsedConfig['redis'];
export interface RedisConfig extends Omit<ParsedRedis, 'username' | 'password' | 'sentinelUsername' | 'sentinelPassword'> {
  readonly username?: Secret;
  readonly password?: Secret;
  readonly sentinelUsername?: Secret;
  readonly sentinelPassword?: Secret;
}

export interface NativeConfig extends Omit<ParsedConfig['native'], 'backupPassword' | 'receiver'> {
  readonly receiver: NativeReceiverSettings;
}

export interface Config extends Omit<ParsedConfig, 'targets' | 's3' | 'encryption' | 'native' | 'redis'> {
  readonly redis: RedisConfig;
  readonly native: NativeConfig;
  readonly s3: S3Config;
  readonly encryption?: EncryptionConfig;
  readonly targets: readonly TargetConfig[];
  /** Where the config came from, for messages. */
  readonly source: string;
}

export interface LoadOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly profiles?: ReadonlyMap<string, Profile>;
}

/** `targets[1].executor.host` from a zod path. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out || '(top level)';
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let node: unknown = root;
  for (const part of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[part];
  }
  return node;
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string[] {
  const path = formatPath(issue.path);
  if ((issue.code === 'invalid_type' || issue.code === 'invalid_union') && valueAt(raw, issue.path) === undefined) return [`${path}: required`];
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => `${formatPath([...issue.path, key])}: unknown field; remove it or check its spelling`);
  }
  if (issue.code === 'invalid_union' && 'discriminator' in issue && issue.discriminator) {
    return [`${path}: ${issue.message}`];
  }
  if (issue.code === 'invalid_union') {
    // Secret references: say what the forms are instead of three nested messages.
    return [`${path}: expected a string, { env: NAME } or { file: PATH }`];
  }
  if (issue.code === 'too_big' || issue.code === 'too_small' || (issue.code === 'invalid_type' && issue.expected === 'number')) {
    // Numbers are never secrets: show what was given beside the bounds and their reason.
    const got = valueAt(raw, issue.path);
    return [`${path}: ${issue.message}, got ${typeof got === 'number' ? String(got) : JSON.stringify(got)}`];
  }
  if (issue.code === 'invalid_value' && 'values' in issue) {
    return [`${path}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${JSON.stringify(valueAt(raw, issue.path))}`];
  }
  return [`${path}: ${issue.message}`];
}

/**
 * A schedule the queue's job scheduler will accept: five fields (minute…weekday) or six (with
 * seconds first), and an IANA time zone. Checked here so that a typo fails `schedule` with the
 * field's name instead of surfacing as a BullMQ error, or never firing.
 */
function scheduleIssues(schedule: { cron: string; tz: string }, at: string): string[] {
  const issues: string[] = [];
  let tzOk = true;
  try {
    new Intl.DateTimeFormat(undefined, { timeZone: schedule.tz });
  } catch {
    tzOk = false;
    issues.push(`${at}.tz: unknown time zone ${JSON.stringify(schedule.tz)}; use an IANA name such as "Europe/Berlin" or "UTC"`);
  }
  const fields = schedule.cron.trim().split(/\s+/).length;
  // "@daily" and friends are one word that cron-parser expands.
  if (fields !== 5 && fields !== 6 && !schedule.cron.trim().startsWith('@')) {
    issues.push(`${at}.cron: expected 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), got ${fields} in ${JSON.stringify(schedule.cron)}`);
  } else {
    try {
      const expression = CronExpressionParser.parse(schedule.cron, tzOk ? { tz: schedule.tz } : {});
      // A backup of a whole fleet takes minutes at least: a pattern that fires several times in
      // one minute only piles up triggers (and once a second floods Redis with them).
      const seconds = expression.fields.second.values;
      if (seconds.length > 1) {
        issues.push(`${at}.cron: ${JSON.stringify(schedule.cron)} fires ${seconds.length} times a minute; fire at most once a minute (a single value in the seconds field, e.g. "0 ${schedule.cron.trim().split(/\s+/).slice(1).join(' ')}", or use 5 fields)`);
      }
    } catch (err) {
      issues.push(`${at}.cron: ${JSON.stringify(schedule.cron)} is not a valid cron pattern (${(err as Error).message})`);
    }
  }
  return issues;
}

/** Validates a config object (already parsed from YAML). All problems are reported at once. */
export function parseConfig(raw: unknown, options: LoadOptions & { source?: string } = {}): Config {
  const env = options.env ?? process.env;
  const profiles = options.profiles ?? builtinProfiles;
  const result = configSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(result.error.issues.flatMap((i) => describeIssue(i, raw)));
  const parsed = result.data;
  const issues: string[] = [];

  const secret = (ref: SecretRef | undefined, field: string): Secret | undefined => {
    if (ref === undefined) return undefined;
    try {
      return resolveSecret(ref, field, env);
    } catch (err) {
      issues.push((err as Error).message);
      return undefined;
    }
  };

  issues.push(...scheduleIssues(parsed.schedule, 'schedule'));
  parsed.targets.forEach((t, i) => {
    if (t.schedule) issues.push(...scheduleIssues(t.schedule, `targets[${i}].schedule`));
  });

  const seen = new Map<string, number>();
  const targets: TargetConfig[] = [];
  parsed.targets.forEach((t, i) => {
    const at = `targets[${i}]`;
    const first = seen.get(t.name);
    if (first !== undefined) issues.push(`${at}.name: "${t.name}" is already used by targets[${first}]; names must be unique`);
    seen.set(t.name, i);
    const profile = profiles.get(t.profile);
    if (!profile) {
      issues.push(`${at}.profile: unknown profile "${t.profile}"; use one of ${[...profiles.keys()].join(', ')}`);
      return;
    }
    for (const name of Object.keys(t.variables)) {
      if (!(name in profile.variables)) {
        issues.push(`${at}.variables.${name}: profile ${profile.name} has no such variable; it has ${Object.keys(profile.variables).join(', ')}`);
      }
    }
    let bound: ResolvedProfile | undefined;
    try {
      const vars = resolveVariables(profile, t.variables);
      const commands = [
        ...profile.services.flatMap((s) => [s.stop, s.start, s.status]),
        ...profile.dumps.flatMap((d) => [d.dump, d.restore, ...(d.snapshot ? [d.snapshot.session, d.snapshot.dump] : [])]),
        ...(profile.snapshot ? [profile.snapshot.pgDumpVersion] : []),
      ];
      for (const cmd of commands) {
        const unknown = unknownPlaceholders(cmd, vars, runTimePlaceholders);
        if (unknown.length > 0) issues.push(`${at}.variables: profile ${profile.name} needs ${unknown.map((u) => `{{${u}}}`).join(', ')}`);
      }
      bound = bindProfile(profile, t.variables);
    } catch (err) {
      issues.push(`${at}.variables: ${(err as Error).message}`);
    }
    let executor: ExecutorSettings | undefined;
    let native: NativeTargetOptions | undefined;
    if (profile.name === nativeProfileName) {
      if (t.executor) issues.push(`${at}.executor: the ${nativeProfileName} profile talks to the appliance's REST API; remove executor and set api: { url, user, password }`);
      if (!t.api) issues.push(`${at}.api: required by the ${nativeProfileName} profile; set api: { url: https://…, user, password: { env: NAME } }`);
      else executor = resolveNativeApi(t.api, at, secret, issues);
      native = resolveNativeOptions(parsed.native, t.native, at, secret, issues);
    } else if (t.api || t.native) {
      issues.push(`${at}.${t.api ? 'api' : 'native'}: only the ${nativeProfileName} profile uses it; remove it or set profile: ${nativeProfileName}`);
    }
    if (profile.name === nativeProfileName) {
      // resolved above
    } else if (!t.executor) {
      issues.push(`${at}.executor: required; e.g. executor: { type: ssh, host: …, hostKey: "SHA256:…" }`);
    } else if (t.executor.type === 'ssh') {
      const e = t.executor;
      if (!e.hostKey && !e.knownHosts) {
        issues.push(`${at}.executor.hostKey: required (or knownHosts); pin the appliance's key, e.g. "SHA256:…" from \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` on the appliance`);
      }
      if (!e.privateKey && !e.password && !e.agent) {
        issues.push(`${at}.executor: no authentication; set privateKey, password or agent`);
      }
      const { privateKey, passphrase, password, ...rest } = e;
      const pk = secret(privateKey, `${at}.executor.privateKey`);
      const pp = secret(passphrase, `${at}.executor.passphrase`);
      const pw = secret(password, `${at}.executor.password`);
      if (pk) {
        // Parsed now, not at the first connection: a garbage key fails `schedule` and `worker`
        // start-up with the field named. ssh2's messages never quote the key.
        const key = ssh2().utils.parseKey(pk.reveal(), pp?.reveal());
        if (key instanceof Error) {
          issues.push(`${at}.executor.privateKey: not a usable private key from ${pk.source} (${key.message}); give an OpenSSH or PEM private key${pp ? ' and its passphrase' : ', with executor.passphrase if it is encrypted'}`);
        }
      }
      executor = { ...rest, ...(pk ? { privateKey: pk } : {}), ...(pp ? { passphrase: pp } : {}), ...(pw ? { password: pw } : {}) };
    } else {
      executor = t.executor;
    }
    if (bound && executor) {
      const { timeouts, api: _api, native: _native, ...rest } = t;
      targets.push({
        ...rest,
        executor,
        ...(native ? { native } : {}),
        boundProfile: bound,
        timeouts: {
          serviceSeconds: timeouts?.serviceSeconds ?? 300,
          dumpSeconds: timeouts?.dumpSeconds ?? 3 * 3600,
          restoreSeconds: timeouts?.restoreSeconds ?? 3 * 3600,
        },
      });
    }
  });

  const { accessKeyId, secretAccessKey, sessionToken, ...s3rest } = parsed.s3;
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    issues.push(`s3: set both accessKeyId and secretAccessKey, or neither (to use the AWS credential chain)`);
  }
  const ak = secret(accessKeyId, 's3.accessKeyId');
  const sk = secret(secretAccessKey, 's3.secretAccessKey');
  const st = secret(sessionToken, 's3.sessionToken');
  const { username: ru, password: rp, sentinelUsername: rsu, sentinelPassword: rsp, ...redisRest } = parsed.redis;
  const redisSecrets = {
    ...optional('username', secret(ru, 'redis.username')),
    ...optional('password', secret(rp, 'redis.password')),
    ...optional('sentinelUsername', secret(rsu, 'redis.sentinelUsername')),
    ...optional('sentinelPassword', secret(rsp, 'redis.sentinelPassword')),
  };
  const encryption = encryptionConfig(parsed.encryption, secret, issues, env);
  const { backupPassword: _nativePasswordRef, receiver: rawReceiver, ...nativeRest } = parsed.native;
  const receiver = resolveReceiver(rawReceiver, issues, targets.some((t) => t.executor.type === 'vcsa-api'));
  if (encryption && parsed.verify.afterBackup && encryption.recipients.length > 0 && encryption.identities.configured === 0) {
    issues.push(
      'verify.afterBackup: the drill decrypts each new backup, but backups are encrypted to encryption.recipients and encryption.identities is empty; ' +
        'run `vcsa-backup verify` from a host that holds the identity instead (recommended: workers then hold nothing that decrypts), or add encryption.identities',
    );
  }
  if (issues.length > 0) throw new ConfigError(issues);

  // REDIS_URL, when set, wins over the file: one switch for every command (DESIGN §6).
  const redisUrl = env['REDIS_URL'];
  if (redisUrl) {
    const problem = redisUrlProblem(redisUrl);
    if (problem) issues.push(`REDIS_URL (environment, overrides redis.url): ${problem}`);
  }
  if (issues.length > 0) throw new ConfigError(issues);
  const { encryption: _encryptionRefs, native: _nativeRefs, ...rest } = parsed;
  return {
    ...rest,
    native: { ...nativeRest, receiver },
    ...(encryption ? { encryption } : {}),
    redis: { ...redisRest, ...redisSecrets, ...(redisUrl ? { url: redisUrl } : {}) },
    s3: { ...s3rest, ...(ak ? { accessKeyId: ak } : {}), ...(sk ? { secretAccessKey: sk } : {}), ...(st ? { sessionToken: st } : {}) },
    targets,
    source: options.source ?? '(inline)',
  };
}

function optional<K extends string>(key: K, value: Secret | undefined): { [P in K]?: Secret } {
  return (value ? { [key]: value } : {}) as { [P in K]?: Secret };
}

/** A short passphrase makes scrypt's cost moot: say so without saying anything about the value. */
const minPassphraseLength = 12;

function encryptionConfig(
  refs: ParsedConfig['encryption'],
  secret: (ref: SecretRef | undefined, field: string) => Secret | undefined,
  issues: string[],
  env: NodeJS.ProcessEnv,
): EncryptionConfig | undefined {
  if (refs === undefined) return undefined;
  const check = (value: Secret | undefined, field: string): Secret | undefined => {
    if (value && value.reveal().length < minPassphraseLength) {
      issues.push(`${field}: shorter than ${minPassphraseLength} characters; use a long random passphrase, e.g. \`openssl rand -base64 32\`, and keep a copy outside the backups`);
    }
    return value;
  };
  const seen = new Map<string, number>();
  refs.recipients.forEach((r, i) => {
    const problem = recipientProblem(r);
    if (problem) issues.push(`encryption.recipients[${i}]: ${problem}`);
    const first = seen.get(r);
    if (first !== undefined) issues.push(`encryption.recipients[${i}]: the same key as encryption.recipients[${first}]; list each recipient once`);
    seen.set(r, i);
  });
  if (refs.recipients.length === 0 && refs.passphrase === undefined) {
    issues.push('encryption: set recipients (age public keys, `age-keygen -y key.txt`) or passphrase: new backups need something to be encrypted to');
  }
  const passphrase = check(secret(refs.passphrase, 'encryption.passphrase'), 'encryption.passphrase');
  const previousPassphrases = refs.previousPassphrases.map((ref, i) => secret(ref, `encryption.previousPassphrases[${i}]`));
  return {
    recipients: refs.recipients,
    ...(passphrase ? { passphrase } : {}),
    passphraseWorkFactor: refs.passphraseWorkFactor,
    previousPassphrases: previousPassphrases.filter((p): p is Secret => p !== undefined),
    identities: new AgeIdentities(refs.identities, env),
  };
}

/** Every passphrase that may open a backup, in the order they are tried. */
export function decryptionPassphrases(config: Config): Secret[] {
  const e = config.encryption;
  return e ? [...(e.passphrase ? [e.passphrase] : []), ...e.previousPassphrases] : [];
}

/** Reads and validates fleet.yaml. */
export function loadConfig(path: string, options: LoadOptions = {}): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`--config: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'}); pass --config PATH or create fleet.yaml`]);
  }
  const raw = parseConfigYaml(text, path);
  return parseConfig(raw ?? {}, { ...options, source: path });
}

export function findTarget(config: Config, name: string): TargetConfig {
  const target = config.targets.find((t) => t.name === name);
  if (!target) {
    throw new ConfigError([`--target: no target named "${name}" in ${config.source}; known targets: ${config.targets.map((t) => t.name).join(', ')}`]);
  }
  return target;
}
