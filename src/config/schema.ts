import { z } from 'zod';
import { defaults } from '../defaults.ts';

/**
 * fleet.yaml, as written by an operator. Default values come from src/defaults.ts; docs/configuration.md
 * and the README's reference describe the same fields. Secrets are references (env, file or
 * inline) that `load.ts` resolves into `Secret`s.
 */

const secretRef = z.union([
  z.string().min(1),
  z.strictObject({ env: z.string().min(1) }),
  z.strictObject({ file: z.string().min(1) }),
]);

/** Target names end up in S3 keys, Redis keys and BullMQ job ids: no colons, not all digits. */
export const targetNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const targetName = z
  .string()
  .regex(targetNamePattern, 'use letters, digits, ".", "_" or "-" (no colons or spaces), at most 63 characters')
  .refine((name) => !/^\d+$/.test(name), 'must not be all digits (BullMQ reserves numeric job ids)');

/**
 * Node's timers hold at most 2^31-1 ms (about 24.8 days): a longer delay fires after 1 ms, which
 * would turn a dump timeout into "stop the services, then time out at once".
 */
export const maxTimerSeconds = Math.floor((2 ** 31 - 1) / 1000);

/**
 * A number from `min` to `max`, the reason for the bounds in the message (load.ts appends the
 * value given). Every number in the config has bounds: an unbounded one has already overflowed
 * a timer and flooded Redis.
 */
function bounded(min: number, max: number, why: string, options: { int?: boolean; minExclusive?: boolean } = {}): z.ZodNumber {
  const what = `${options.int ? 'an integer' : 'a number'} ${options.minExclusive ? `above ${min}` : `from ${min}`} to ${max} (${why})`;
  let n = z.number({ error: `expected ${what}` });
  if (options.int) n = n.int({ error: `expected ${what}` });
  n = options.minExclusive ? n.gt(min, { error: `expected ${what}` }) : n.min(min, { error: `expected ${what}` });
  return n.max(max, { error: `expected ${what}` });
}

const timerSeconds = (min: number): z.ZodNumber => bounded(min, maxTimerSeconds, "Node's timers hold at most 2^31-1 ms, 24.8 days; a longer one fires at once");
const count = (min: number, max: number, why: string): z.ZodNumber => bounded(min, max, why, { int: true });

const localExecutor = z.strictObject({
  type: z.literal('local'),
  /** Shell used to run profile commands. */
  shell: z.string().default(defaults.executor.localShell),
});

const sshExecutor = z.strictObject({
  type: z.literal('ssh'),
  host: z.string().min(1),
  port: count(1, 65535, 'a TCP port').default(22),
  user: z.string().min(1).default('root'),
  /** Pinned host key, as OpenSSH prints it: "SHA256:base64…". Either this or knownHosts is required. */
  hostKey: z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}=?$/, 'expected "SHA256:<base64>" as printed by `ssh-keygen -lf`').optional(),
  knownHosts: z.string().min(1).optional(),
  privateKey: secretRef.optional(),
  passphrase: secretRef.optional(),
  password: secretRef.optional(),
  /** Path of the ssh-agent socket; `true` means $SSH_AUTH_SOCK. */
  agent: z.union([z.boolean(), z.string().min(1)]).optional(),
  keepaliveSeconds: bounded(1, 3600, 'keepalives while a dump runs; rarer than hourly lets a dead connection hang the job').default(15),
  connectTimeoutSeconds: bounded(1, 600, 'a connection not made within 10 minutes will not be').default(20),
});

const dockerExecutor = z.strictObject({
  type: z.literal('docker'),
  container: z.string().min(1),
  /** Unix socket of the Docker engine; default $DOCKER_HOST or /var/run/docker.sock. */
  socketPath: z.string().min(1).optional(),
  /** tcp://host:port or unix:///path; overrides socketPath. */
  host: z.string().min(1).optional(),
  user: z.string().min(1).optional(),
});

/**
 * S3's bucket naming rules (virtual-host style needs DNS names; S3-compatible servers follow
 * them too): 3–63 characters of lowercase letters, digits, "." and "-", starting and ending with
 * a letter or digit, no "..", not an IP address.
 */
export const bucketName = z
  .string({ error: 'expected the bucket name as a string' })
  .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'not a valid bucket name: 3 to 63 lowercase letters, digits, "." or "-", starting and ending with a letter or digit')
  .refine((b) => !b.includes('..') && !b.includes('.-') && !b.includes('-.'), 'not a valid bucket name: no "..", ".-" or "-."')
  .refine((b) => !/^\d+\.\d+\.\d+\.\d+$/.test(b), 'not a valid bucket name: must not look like an IP address');

/**
 * A key prefix that makes the same keys on every server: no leading "/", no empty segment
 * ("//"), no "." or ".." segment, no colon (consoles mangle them), printable characters only.
 * A trailing "/" is allowed and ignored.
 */
export const keyPrefix = z
  .string({ error: 'expected the key prefix as a string' })
  .regex(/^[^:]*$/, 'no colons')
  .refine((p) => !p.startsWith('/'), 'must not start with "/" (keys would differ between servers); write "fleet/a", not "/fleet/a"')
  .refine((p) => !p.replace(/\/$/, '').includes('//'), 'contains an empty path segment ("//")')
  .refine((p) => !p.split('/').some((seg) => seg === '.' || seg === '..'), 'must not contain "." or ".." segments')
  .refine((p) => !/[\u0000-\u001f\u007f\\]/.test(p), 'must not contain control characters or "\\"')
  .refine((p) => p.length <= 512, 'at most 512 characters');

/** An http:// or https:// URL (other schemes are refused at load, not at the first request). */
export function httpUrl(what: string): z.ZodType<string> {
  return z.string({ error: `expected ${what} URL as a string` }).refine((v) => {
    try {
      const u = new URL(v);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
    } catch {
      return false;
    }
  }, `expected ${what} as an http:// or https:// URL, such as "https://s3.example.net:9000"`);
}

/** redis:// or rediss:// (TLS). Checked here so that a typo is exit 2, not a driver error later. */
export function redisUrlProblem(value: string): string | null {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return 'not a URL; expected redis://[user:password@]host:port[/db] or rediss://… for TLS';
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') return `scheme ${u.protocol} is not redis: or rediss:; expected redis://host:port`;
  if (u.hostname === '') return 'no host; expected redis://host:port';
  if (u.pathname !== '' && u.pathname !== '/' && !/^\/\d{1,2}$/.test(u.pathname)) return 'the path must be a database number, e.g. redis://host:6379/0';
  return null;
}
const redisUrl = z.string({ error: 'expected a redis:// URL as a string' }).superRefine((value, ctx) => {
  const problem = redisUrlProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** postgres:// or postgresql:// with a host: the server that `verify` restores into. */
const postgresUrl = z.string({ error: 'expected a postgres:// URL as a string' }).refine((value) => {
  try {
    const u = new URL(value);
    return (u.protocol === 'postgres:' || u.protocol === 'postgresql:') && u.hostname !== '';
  } catch {
    return false;
  }
}, 'expected postgres://user[:password]@host:port/database');

/**
 * Virtual file systems are not storage: mkdir under /proc or /sys hangs or fails in odd ways, and
 * a dump written to /dev is lost.
 */
const virtualRoots = ['/proc', '/sys', '/dev'];
const spoolDir = z
  .string({ error: 'expected a directory path as a string' })
  .min(1)
  .refine((dir) => {
    const normal = dir.replace(/\/+/g, '/').replace(/\/$/, '');
    return !virtualRoots.some((root) => normal === root || normal.startsWith(`${root}/`));
  }, `must not be under ${virtualRoots.join(', ')} (virtual file systems); use a directory on a disk with room for the dumps, e.g. /var/spool/vcsa-backup`);

export const executorSchema = z.discriminatedUnion('type', [localExecutor, sshExecutor, dockerExecutor]);

const scheduleSchema = z.strictObject({
  /** Five- or six-field cron pattern. */
  cron: z.string().min(1),
  /** IANA time zone, e.g. Europe/Berlin. The appliances run in UTC; the schedule need not. */
  tz: z.string().min(1).default(defaults.schedule.tz),
});

const timeoutsSchema = z.strictObject({
  /** Stop/start/status of one service. */
  serviceSeconds: bounded(1, 86400, 'stopping or starting one service; a day is already a hang').default(300),
  /** One database dump. */
  dumpSeconds: timerSeconds(1).default(3 * 3600),
  /** One database restore. */
  restoreSeconds: timerSeconds(1).default(3 * 3600),
});

/**
 * The vcsa-native profile's executor: the appliance's REST API (src/native/). TLS: `ca` (PEM file
 * path or inline PEM) or `fingerprint` (sha256 of the certificate, "AB:CD:…" as vSphere shows it);
 * neither: the system's trust store.
 */
const nativeApiSchema = z.strictObject({
  url: z.url().regex(/^https:\/\//, 'use https://; the appliance API is HTTPS only'),
  user: z.string().min(1).default(defaults.native.apiUser),
  password: secretRef,
  tls: z
    .strictObject({
      ca: z.string().min(1).optional(),
      fingerprint: z
        .string()
        .regex(/^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$/, 'expected the certificate\'s sha256 as 32 hex pairs separated by ":" (`openssl x509 -noout -fingerprint -sha256`)')
        .optional(),
    })
    .optional(),
  requestTimeoutSeconds: bounded(1, 3600, 'one REST API request').default(60),
});

/** Per-target overrides of the native section. */
const targetNativeSchema = z.strictObject({
  /** Optional parts besides `common` (always taken): e.g. ["seat"] (statistics, events, tasks). */
  parts: z.array(z.string().min(1)).optional(),
  /** Encrypts the appliance's archive (VMware's rules: 8–20 characters, upper, lower, digit, special). */
  backupPassword: secretRef.optional(),
});

const targetSchema = z.strictObject({
  name: targetName,
  profile: z.string().min(1),
  /** Required by shell profiles; vcsa-native targets have `api` instead. */
  executor: executorSchema.optional(),
  api: nativeApiSchema.optional(),
  native: targetNativeSchema.optional(),
  /** Overrides of the profile's variables (binary paths, config files, service command). */
  variables: z.record(z.string(), z.string()).default({}),
  schedule: scheduleSchema.optional(),
  timeouts: timeoutsSchema.partial().optional(),
  /** Excluded from `run` without --target and from the schedule. */
  enabled: z.boolean().default(true),
});

const retentionSchema = z.strictObject({
  keepLast: count(1, 100_000, 'at least the newest backup').optional(),
  maxAgeDays: bounded(0, 36_500, 'days, at most a century', { minExclusive: true }).optional(),
  keepDaily: count(0, 100_000, 'days with a kept backup').optional(),
  keepWeekly: count(0, 100_000, 'weeks with a kept backup').optional(),
  keepMonthly: count(0, 100_000, 'months with a kept backup').optional(),
  /** Skip pruning when the newest backup is smaller than this fraction of the one before. */
  minSizeRatio: bounded(0, 1, 'a fraction of the previous backup').default(0.5),
  /** Prune after every successful backup. */
  afterBackup: z.boolean().default(defaults.retention.afterBackup),
});

export const configSchema = z.strictObject({
  redis: z
    .strictObject({
      url: redisUrl.default('redis://127.0.0.1:6379'),
      /** Prefix of every Redis key (BullMQ queues, leases, state). Use "{vcsa-backup}" on Redis Cluster. */
      prefix: z.string().regex(/^[^:\s]+$/, 'no colons or spaces').default(defaults.redis.prefix),
      /** Redis Sentinel: the sentinels to ask for the primary of `name` (url then gives only scheme, user, password, db). */
      sentinels: z.array(z.strictObject({ host: z.string().min(1), port: z.number().int().min(1).max(65535) })).min(1).optional(),
      /** The Sentinel primary group name (`sentinel monitor <name> …`); required with sentinels. */
      name: z.string().min(1).optional(),
      /** ACL user and its password; win over the ones in url. */
      username: secretRef.optional(),
      password: secretRef.optional(),
      /** Credentials for the sentinels themselves, when they have `requirepass` or ACL users. */
      sentinelUsername: secretRef.optional(),
      sentinelPassword: secretRef.optional(),
      /** TLS (also on with a rediss:// url): PEM files of a private CA, and of a client certificate for mutual TLS. */
      tls: z
        .strictObject({
          ca: z.string().min(1).optional(),
          cert: z.string().min(1).optional(),
          key: z.string().min(1).optional(),
          servername: z.string().min(1).optional(),
        })
        .optional(),
      /**
       * Replicas that must acknowledge (WAIT) a fleet-lease acquisition or renewal before it
       * counts, so that a Sentinel failover cannot lose it. Default: 1 with sentinels, else 0.
       */
      leaseReplicas: z.number().int().min(0).max(16).optional(),
      /** How long a command (run --wait, status, restore, verify, dashboard) waits for a lost Redis to come back before REDIS_UNREACHABLE. Workers wait forever. */
      unreachableSeconds: z.number().int().min(1).max(3600).default(60),
    })
    .superRefine((r, ctx) => {
      if (r.sentinels && !r.name) ctx.addIssue({ code: 'custom', path: ['name'], message: 'required with redis.sentinels: the primary group name from `sentinel monitor <name> …`, e.g. mymaster' });
      if (r.name && !r.sentinels) ctx.addIssue({ code: 'custom', path: ['sentinels'], message: 'required with redis.name: the sentinels to ask, e.g. [{ host: 127.0.0.1, port: 26379 }]' });
      if ((r.tls?.cert === undefined) !== (r.tls?.key === undefined)) ctx.addIssue({ code: 'custom', path: ['tls'], message: 'set both cert and key (a client certificate), or neither' });
    })
    .prefault({}),
  s3: z.strictObject({
    bucket: bucketName,
    /** Key prefix; objects are <prefix>/<target>/<backup id>/<file>. */
    prefix: keyPrefix.default('vcsa'),
    region: z.string().regex(/^[a-z0-9-]{1,64}$/, 'expected a region name such as "us-east-1" (lowercase letters, digits, "-")').default('us-east-1'),
    /** For S3-compatible servers; omit for AWS. */
    endpoint: httpUrl('an S3 endpoint').optional(),
    forcePathStyle: z.boolean().optional(),
    accessKeyId: secretRef.optional(),
    secretAccessKey: secretRef.optional(),
    sessionToken: secretRef.optional(),
    /**
     * "when-required" is what most S3-compatible servers need (no aws-chunked trailers);
     * "when-supported" is the SDK default and fine on AWS.
     */
    checksums: z.enum(['when-required', 'when-supported']).optional(),
    /** 8 MiB: AWS and the small S3-compatible servers (the embedded one takes bodies up to ~11 MiB) all accept it. */
    partSizeMiB: count(5, 5120, "S3's multipart limits: parts of 5 MiB to 5 GiB").default(8),
    queueSize: count(1, 32, 'parts uploaded at once; each holds a part in memory').default(4),
    /** "download" re-reads each object and compares sha256; "head" compares size and the sha256 we stored in the object's metadata (weaker: that metadata is what we sent, not a hash of the stored bytes). */
    verify: z.enum(['download', 'head']).default(defaults.s3.verify),
    createBucket: z.boolean().default(false),
    storageClass: z.string().optional(),
    /**
     * Server-side encryption asked for on every PUT and multipart upload: "AES256" (SSE-S3) or
     * "aws:kms" (SSE-KMS, with kmsKeyId or the account's aws/s3 key). Recorded in each manifest.
     */
    serverSideEncryption: z.enum(['AES256', 'aws:kms']).optional(),
    kmsKeyId: z.string().min(1).optional(),
    /**
     * false: the credentials have no delete right (versioned bucket with Object Lock, where the
     * bucket's own retention expires backups): `iam-policy` leaves s3:DeleteObject out and
     * `prune` reports what it would delete instead of deleting.
     */
    deletes: z.boolean().default(true),
  }).superRefine((s, ctx) => {
    if (s.kmsKeyId !== undefined && s.serverSideEncryption !== 'aws:kms') ctx.addIssue({ code: 'custom', path: ['kmsKeyId'], message: 'only with serverSideEncryption: aws:kms; set it, or remove kmsKeyId' });
  }),
  schedule: scheduleSchema.default({ ...defaults.schedule }),
  quiesce: z
    .strictObject({
      /** Appliances that may have services stopped at the same instant, fleet-wide. */
      maxConcurrent: count(1, 1000, 'appliances quiesced at once').default(1),
      /** The fleet lease; renewed every third of this. Longer than any plausible pause of a worker. */
      leaseSeconds: bounded(1, 3600, 'renewed every third of it, so at least 1 s; a dead worker\'s appliance stays quiesced up to this long, so at most an hour').default(30),
      watchdogIntervalSeconds: bounded(1, 3600, 'every worker checks Redis this often: at most once a second, at least once an hour so a dead worker\'s appliance comes back').default(10),
      /**
       * "dump" (default): services start as soon as the dumps are spooled; compression and upload
       * run with the appliance back up. "upload": the classic script's order — services start
       * after the artifacts are uploaded (the manifest follows), holding the fleet slot that long.
       * If that upload fails, the services are started and it is retried from the spool.
       */
      startServicesAfter: z.enum(['dump', 'upload']).default(defaults.quiesce.startServicesAfter),
      /** false dumps the live databases without stopping anything: for testing only, the pair will disagree. */
      enabled: z.boolean().default(true),
      /**
       * "snapshot" (default): where the profile can (vcsa-6.x, whose pg_dump is 9.5 or later,
       * checked on the appliance before anything stops), the services are down only while a
       * snapshot of each database is exported; the dumps read those snapshots after the services
       * are back. Otherwise, and with "classic", the services stay down for the whole dump.
       */
      mode: z.enum(['snapshot', 'classic']).default('snapshot'),
      /** How long a job waits for a fleet slot before it is retried later. */
      waitSeconds: bounded(0.1, 7 * 86400, 'a job waits at most a week for a fleet slot, then is retried').default(6 * 3600),
    })
    .prefault({}),
  /** The vcsa-native profile: appliance file-based backups pushed to a per-job SFTP receiver (docs/native.md). */
  native: z
    .strictObject({
      /** Native jobs running at once, fleet-wide (a lease pool of its own: no services stop, but appliances and receivers carry load). */
      maxConcurrent: count(1, 1000, 'native jobs at once').default(2),
      leaseSeconds: bounded(1, 3600, 'renewed every third of it, so at least 1 s; at most an hour').default(30),
      receiver: z
        .strictObject({
          /** host:port the per-job SFTP server binds; port 0 (default) gives every job its own port. */
          listen: z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port, e.g. 0.0.0.0:0').default(defaults.native.receiverListen),
          /** host[:port] the appliance connects to; without a port, the port bound for the job. Default: the listen host unless it is 0.0.0.0. */
          advertise: z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s/]+)(:\d{1,5})?$/, 'expected host or host:port the appliances can reach').optional(),
        })
        .prefault({}),
      /** Optional parts besides `common`, for every native target (targets[].native.parts overrides). */
      parts: z.array(z.string().min(1)).default([]),
      backupPassword: secretRef.optional(),
      /** How often a running appliance job is polled. */
      pollSeconds: bounded(1, 3600, 'how often the appliance\'s job is polled').default(5),
      /** A job not finished by then is cancelled on the appliance and fails (retryable). */
      jobTimeoutSeconds: timerSeconds(1).default(4 * 3600),
      /** How long a job waits for a native slot before it is retried later. */
      waitSeconds: bounded(1, 7 * 86400, 'a job waits at most a week for a slot, then is retried').default(6 * 3600),
    })
    .prefault({}),
  spool: z
    .strictObject({
      dir: spoolDir.default('/var/spool/vcsa-backup'),
      /** Refuse to start a dump when less than this is free in the spool. */
      minFreeMiB: count(0, 16 * 1024 * 1024, 'MiB, at most 16 TiB').default(256),
    })
    .prefault({}),
  compression: z
    .strictObject({
      /** gzip level, 1 (fastest) to 9 (smallest). */
      level: count(1, 9, "gzip's levels").default(6),
      /** Threads compressing in parallel (independent gzip members, one file); 0 = one per core. */
      threads: count(0, 256, 'compression threads; 0 = one per core').default(0),
    })
    .prefault({}),
  /**
   * Client-side encryption of every artifact with age (docs/restore.md, "Encryption"). Absent:
   * artifacts are stored gzip only. New backups are encrypted to `recipients` (age X25519 public
   * keys) or, without recipients, to `passphrase` (age's scrypt). Identities and older
   * passphrases only decrypt (restore, verify, rekey).
   */
  encryption: z
    .strictObject({
      /** age public keys, "age1…" (`age-keygen -y key.txt`). Workers need nothing else. */
      recipients: z.array(z.string()).default([]),
      /** Encrypts new backups when there are no recipients; otherwise only decrypts. */
      passphrase: secretRef.optional(),
      /** Tried in order after passphrase when decrypting: backups taken before a rotation. */
      previousPassphrases: z.array(secretRef).default([]),
      /** age key files (AGE-SECRET-KEY-1… lines and # comments), read only by restore, verify and rekey. */
      identities: z.array(secretRef).default([]),
      /**
       * scrypt's work factor (log2 N) for new passphrase-encrypted backups: each derivation takes
       * 2^N·1 KiB of memory and about a second at 18 (age's default). Recorded in each file, so
       * older backups open whatever it is now.
       */
      passphraseWorkFactor: count(10, 20, "age scrypt's work factor, log2 N: 18 is age's default; 20 takes 1 GiB per derivation").default(defaults.encryption.passphraseWorkFactor),
    })
    .optional(),
  retention: retentionSchema.prefault({}),
  worker: z
    .strictObject({
      /** Backups one worker process runs at once. Quiescing is still limited fleet-wide by the lease. */
      concurrency: count(1, 64, 'backups one worker runs at once; each holds a spool and connections').default(2),
      /** Attempts of a queued backup (a fresh dump only when its spool is lost or it never got one). */
      attempts: count(1, 100, 'attempts of a queued backup').default(5),
      /** BullMQ job lock; a killed worker's job is retried after about this plus stalledIntervalSeconds. */
      lockSeconds: bounded(1, 3600, 'BullMQ\'s job lock, renewed at half of it; a killed worker\'s job waits this long').default(30),
      stalledIntervalSeconds: bounded(1, 3600, 'how often workers look for stalled jobs in Redis').default(30),
      backoffSeconds: bounded(0.1, 86400, 'first retry delay, doubled per attempt; at least 0.1 s').default(30),
      /** Upload attempts from the spool within one job attempt, with exponential backoff and jitter. */
      uploadAttempts: count(1, 100, 'upload attempts from the spool').default(8),
    })
    .prefault({}),
  verify: z
    .strictObject({
      afterBackup: z.boolean().default(false),
      /** A PostgreSQL server for scratch restores: postgres://user@host:port/db */
      scratchUrl: postgresUrl.default('postgres://postgres@127.0.0.1:5432/postgres'),
      /** Directory of psql and pg_restore for scratch restores; default /usr/lib/postgresql/15/bin if present, else $PATH. */
      pgBin: z.string().min(1).optional(),
      /** Consistency checks of a backup's databases; those for a profile replace its built-in ones (docs/restore.md). */
      checks: z
        .array(
          z.strictObject({
            profile: z.string().min(1),
            name: z.string().min(1),
            description: z.string().optional(),
            /** dump name → SQL returning one value */
            sql: z.record(z.string(), z.string().min(1)),
            /** dump name → tables ("schema.table") that must exist, else the check is skipped */
            requires: z.record(z.string(), z.array(z.string().min(1))).optional(),
            compare: z.literal('equal').default('equal'),
          }),
        )
        .optional(),
    })
    .prefault({}),
  dashboard: z
    .strictObject({
      /** A last good backup older than this is highlighted on the fleet page. */
      staleHours: bounded(0, 8760, 'hours, at most a year', { minExclusive: true }).default(26),
      /** Bearer token required for everything but /healthz (`Authorization: Bearer <token>`). */
      token: secretRef.optional(),
      /** Basic auth for everything but /healthz; either this or token, or both. */
      basicAuth: z.strictObject({ user: z.string().min(1), password: secretRef }).optional(),
      /** Hide the page's actions (back up now, verify now, retry) and refuse them (403). */
      readOnly: z.boolean().default(false),
    })
    .prefault({}),
  notify: z
    .strictObject({
      webhook: z
        .strictObject({
          /** A secret reference: webhook URLs (Slack's, for one) carry their credentials in the path. */
          url: secretRef,
          /** "json": the event object; "slack": `{ "text": … }` for Slack-compatible incoming webhooks. */
          format: z.enum(['json', 'slack']).default('json'),
          timeoutSeconds: bounded(1, 300, 'one webhook request').default(5),
          /** At most one notification per target and kind (failure, recovery, stale) in this window. */
          minIntervalSeconds: bounded(0, 7 * 86400, 'at most a week between notifications of one kind').default(300),
        })
        .optional(),
      /** Alert when an appliance has had no good backup for this long. */
      staleHours: bounded(0, 8760, 'hours, at most a year', { minExclusive: true }).default(26),
      /** How often workers look for stale appliances (one alert per stale spell, whatever the number of workers). */
      checkIntervalSeconds: bounded(0.1, 86400, 'every worker reads Redis this often: at most ten times a second, at least daily').default(300),
    })
    .prefault({}),
  targets: z.array(targetSchema).min(1, 'list at least one appliance under targets'),
});

export type RawConfig = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
export type ExecutorConfig = z.output<typeof executorSchema>;
