import { z } from 'zod';

/**
 * fleet.yaml, as written by an operator. Defaults live here, in one place; docs/configuration.md
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

const seconds = z.number().positive();

const localExecutor = z.strictObject({
  type: z.literal('local'),
  /** Shell used to run profile commands. */
  shell: z.string().default('/bin/bash'),
});

const sshExecutor = z.strictObject({
  type: z.literal('ssh'),
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(22),
  user: z.string().min(1).default('root'),
  /** Pinned host key, as OpenSSH prints it: "SHA256:base64…". Either this or knownHosts is required. */
  hostKey: z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}=?$/, 'expected "SHA256:<base64>" as printed by `ssh-keygen -lf`').optional(),
  knownHosts: z.string().min(1).optional(),
  privateKey: secretRef.optional(),
  passphrase: secretRef.optional(),
  password: secretRef.optional(),
  /** Path of the ssh-agent socket; `true` means $SSH_AUTH_SOCK. */
  agent: z.union([z.boolean(), z.string().min(1)]).optional(),
  keepaliveSeconds: seconds.default(15),
  connectTimeoutSeconds: seconds.default(20),
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

export const executorSchema = z.discriminatedUnion('type', [localExecutor, sshExecutor, dockerExecutor]);

const scheduleSchema = z.strictObject({
  /** Five- or six-field cron pattern. */
  cron: z.string().min(1),
  /** IANA time zone, e.g. Europe/Berlin. The appliances run in UTC; the schedule need not. */
  tz: z.string().min(1).default('UTC'),
});

const timeoutsSchema = z.strictObject({
  /** Stop/start/status of one service. */
  serviceSeconds: seconds.default(300),
  /** One database dump. */
  dumpSeconds: seconds.default(3 * 3600),
  /** One database restore. */
  restoreSeconds: seconds.default(3 * 3600),
});

/**
 * The vcsa-native profile's executor: the appliance's REST API (src/native/). TLS: `ca` (PEM file
 * path or inline PEM) or `fingerprint` (sha256 of the certificate, "AB:CD:…" as vSphere shows it);
 * neither: the system's trust store.
 */
const nativeApiSchema = z.strictObject({
  url: z.url().regex(/^https:\/\//, 'use https://; the appliance API is HTTPS only'),
  user: z.string().min(1).default('administrator@vsphere.local'),
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
  requestTimeoutSeconds: seconds.default(60),
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
  keepLast: z.number().int().min(1).optional(),
  maxAgeDays: z.number().positive().optional(),
  keepDaily: z.number().int().min(0).optional(),
  keepWeekly: z.number().int().min(0).optional(),
  keepMonthly: z.number().int().min(0).optional(),
  /** Skip pruning when the newest backup is smaller than this fraction of the one before. */
  minSizeRatio: z.number().min(0).max(1).default(0.5),
  /** Prune after every successful backup. */
  afterBackup: z.boolean().default(true),
});

export const configSchema = z.strictObject({
  redis: z
    .strictObject({
      url: z.string().min(1).default('redis://127.0.0.1:6379'),
      /** Prefix of every Redis key (BullMQ queues, leases, state). Use "{vcsa-backup}" on Redis Cluster. */
      prefix: z.string().regex(/^[^:\s]+$/, 'no colons or spaces').default('vcsa-backup'),
    })
    .prefault({}),
  s3: z.strictObject({
    bucket: z.string().min(3),
    /** Key prefix; objects are <prefix>/<target>/<backup id>/<file>. */
    prefix: z.string().regex(/^[^:]*$/, 'no colons').default('vcsa'),
    region: z.string().min(1).default('us-east-1'),
    /** For S3-compatible servers; omit for AWS. */
    endpoint: z.url().optional(),
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
    partSizeMiB: z.number().int().min(5).max(5120).default(8),
    queueSize: z.number().int().min(1).max(32).default(4),
    /** "download" re-reads each object and compares sha256; "head" compares size and the sha256 we stored in the object's metadata (weaker: that metadata is what we sent, not a hash of the stored bytes). */
    verify: z.enum(['download', 'head']).default('download'),
    createBucket: z.boolean().default(false),
    storageClass: z.string().optional(),
  }),
  schedule: scheduleSchema.default({ cron: '0 2 * * *', tz: 'UTC' }),
  quiesce: z
    .strictObject({
      /** Appliances that may have services stopped at the same instant, fleet-wide. */
      maxConcurrent: z.number().int().min(1).default(1),
      /** The fleet lease; renewed every third of this. Longer than any plausible pause of a worker. */
      leaseSeconds: seconds.default(30),
      watchdogIntervalSeconds: seconds.default(10),
      /**
       * "dump" (default): services start as soon as the dumps are spooled; compression and upload
       * run with the appliance back up. "upload": the classic script's order — services start
       * after the artifacts are uploaded (the manifest follows), holding the fleet slot that long.
       * If that upload fails, the services are started and it is retried from the spool.
       */
      startServicesAfter: z.enum(['dump', 'upload']).default('dump'),
      /** false dumps the live databases without stopping anything: for testing only, the pair will disagree. */
      enabled: z.boolean().default(true),
      /** How long a job waits for a fleet slot before it is retried later. */
      waitSeconds: seconds.default(6 * 3600),
    })
    .prefault({}),
  /** The vcsa-native profile: appliance file-based backups pushed to a per-job SFTP receiver (docs/native.md). */
  native: z
    .strictObject({
      /** Native jobs running at once, fleet-wide (a lease pool of its own: no services stop, but appliances and receivers carry load). */
      maxConcurrent: z.number().int().min(1).default(2),
      leaseSeconds: seconds.default(30),
      receiver: z
        .strictObject({
          /** host:port the per-job SFTP server binds; port 0 (default) gives every job its own port. */
          listen: z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port, e.g. 0.0.0.0:0').default('0.0.0.0:0'),
          /** host[:port] the appliance connects to; without a port, the port bound for the job. Default: the listen host unless it is 0.0.0.0. */
          advertise: z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s/]+)(:\d{1,5})?$/, 'expected host or host:port the appliances can reach').optional(),
        })
        .prefault({}),
      /** Optional parts besides `common`, for every native target (targets[].native.parts overrides). */
      parts: z.array(z.string().min(1)).default([]),
      backupPassword: secretRef.optional(),
      /** How often a running appliance job is polled. */
      pollSeconds: seconds.default(5),
      /** A job not finished by then is cancelled on the appliance and fails (retryable). */
      jobTimeoutSeconds: seconds.default(4 * 3600),
      /** How long a job waits for a native slot before it is retried later. */
      waitSeconds: seconds.default(6 * 3600),
    })
    .prefault({}),
  spool: z
    .strictObject({
      dir: z.string().min(1).default('/var/spool/vcsa-backup'),
      /** Refuse to start a dump when less than this is free in the spool. */
      minFreeMiB: z.number().int().min(0).default(256),
    })
    .prefault({}),
  compression: z
    .strictObject({
      /** gzip level, 1 (fastest) to 9 (smallest). */
      level: z.number().int().min(1).max(9).default(6),
      /** Threads compressing in parallel (independent gzip members, one file); 0 = one per core. */
      threads: z.number().int().min(0).max(256).default(0),
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
    })
    .optional(),
  retention: retentionSchema.prefault({}),
  worker: z
    .strictObject({
      /** Backups one worker process runs at once. Quiescing is still limited fleet-wide by the lease. */
      concurrency: z.number().int().min(1).default(2),
      /** Attempts of a queued backup (a fresh dump only when its spool is lost or it never got one). */
      attempts: z.number().int().min(1).default(5),
      /** BullMQ job lock; a killed worker's job is retried after about this plus stalledIntervalSeconds. */
      lockSeconds: seconds.default(30),
      stalledIntervalSeconds: seconds.default(30),
      backoffSeconds: seconds.default(30),
      /** Upload attempts from the spool within one job attempt, with exponential backoff and jitter. */
      uploadAttempts: z.number().int().min(1).default(8),
    })
    .prefault({}),
  verify: z
    .strictObject({
      afterBackup: z.boolean().default(false),
      /** A PostgreSQL server for scratch restores: postgres://user@host:port/db */
      scratchUrl: z.string().min(1).default('postgres://postgres@127.0.0.1:5432/postgres'),
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
      staleHours: seconds.default(26),
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
          timeoutSeconds: seconds.default(5),
          /** At most one notification per target and kind (failure, recovery, stale) in this window. */
          minIntervalSeconds: z.number().min(0).default(300),
        })
        .optional(),
      /** Alert when an appliance has had no good backup for this long. */
      staleHours: seconds.default(26),
      /** How often workers look for stale appliances (one alert per stale spell, whatever the number of workers). */
      checkIntervalSeconds: seconds.default(300),
    })
    .prefault({}),
  targets: z.array(targetSchema).min(1, 'list at least one appliance under targets'),
});

export type RawConfig = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
export type ExecutorConfig = z.output<typeof executorSchema>;
