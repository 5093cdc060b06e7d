/**
 * Every default and internal timing in one place (graphile-worker's preset, in spirit): the
 * config schema takes its defaults from `defaults`, the code its internal timings from `timings`.
 * Each default must work on a 1 GiB VCDB and a fleet of a thousand appliances; a timing that is
 * not a setting says here why it is what it is.
 */
export const defaults = {
  executor: {
    localShell: '/bin/bash',
    sshPort: 22,
    sshUser: 'root',
    /** Finds a dead connection during a long, silent dump within a minute or so. */
    sshKeepaliveSeconds: 15,
    sshConnectTimeoutSeconds: 20,
  },
  timeouts: {
    /** Stop/start/status of one service: vpxd takes minutes to start on a big inventory. */
    serviceSeconds: 300,
    /** One dump / one restore: hours, for the largest VCDBs on slow storage. */
    dumpSeconds: 3 * 3600,
    restoreSeconds: 3 * 3600,
  },
  native: {
    apiUser: 'administrator@vsphere.local',
    requestTimeoutSeconds: 60,
    maxConcurrent: 2,
    leaseSeconds: 30,
    receiverListen: '0.0.0.0:0',
    pollSeconds: 5,
    jobTimeoutSeconds: 4 * 3600,
    waitSeconds: 6 * 3600,
  },
  retention: { minSizeRatio: 0.5, afterBackup: true },
  redis: { url: 'redis://127.0.0.1:6379', prefix: 'vcsa-backup' },
  s3: { prefix: 'vcsa', region: 'us-east-1', partSizeMiB: 8, queueSize: 4, verify: 'download' },
  schedule: { cron: '0 2 * * *', tz: 'UTC' },
  quiesce: {
    maxConcurrent: 1,
    /** Renewed every third: longer than any plausible pause of a worker (GC, a frozen VM). */
    leaseSeconds: 30,
    /** A dead worker's appliance is restarted within lease + this (invariant 2: under 60 s). */
    watchdogIntervalSeconds: 10,
    startServicesAfter: 'dump',
    /** A nightly run of a large fleet waits its turn for hours, not forever. */
    waitSeconds: 6 * 3600,
  },
  spool: { dir: '/var/spool/vcsa-backup', minFreeMiB: 256 },
  /** threads 0: one per core. */
  compression: { level: 6, threads: 0 },
  /** age's own default for `age -p`: about a second and 256 MiB per derivation. */
  encryption: { passphraseWorkFactor: 18 },
  worker: { concurrency: 2, attempts: 5, lockSeconds: 30, stalledIntervalSeconds: 30, backoffSeconds: 30, uploadAttempts: 8 },
  verify: { scratchUrl: 'postgres://postgres@127.0.0.1:5432/postgres' },
  dashboard: { staleHours: 26 },
  notify: { webhookFormat: 'json', webhookTimeoutSeconds: 5, minIntervalSeconds: 300, staleHours: 26, checkIntervalSeconds: 300 },
} as const;

export const timings = {
  /** Leases and locks are renewed this often relative to their TTL: two renewals may fail before it lapses. */
  renewFraction: 1 / 3,
  /** No renewal timer runs faster than this, whatever the TTL (tests use leases of seconds). */
  minRenewMs: 200,
  /** A command retries connecting to a Redis that does not answer at start this often (within redis.unreachableSeconds). */
  redisStartRetryMs: 500,
  /**
   * A fleet-lease write waits this long at most for its replicas (redis.leaseReplicas): a sixth
   * of the lease, between these bounds, so a renewal that waits in vain leaves time for the next.
   */
  leaseReplicaWaitMinMs: 50,
  leaseReplicaWaitMaxMs: 2000,
  /** The holder trusts its lease this much less than its length (at most a tenth of it): clocks of Redis hosts differ a little. */
  leaseClockMarginMs: 1000,
  /** A waiter for a fleet slot looks again this often, besides being woken by a release. */
  leaseAcquirePollMs: 1000,
  /** A backup waiting for another job's target lock looks again this often. */
  targetLockPollMs: 500,
  /** The watchdog's first sweep after start, at most: a restarted worker rescues at once. */
  watchdogFirstSweepMs: 1000,
  /** A watchdog's claim on an expired slot lasts at least this (or twice the services' start timeouts). */
  watchdogClaimMinMs: 60_000,
  /** Failed rescues back off from the watchdog interval, doubling, up to this: an unreachable appliance is retried every ten minutes, not every few seconds for ever. */
  watchdogBackoffCapMs: 10 * 60_000,
  /** Upload retries back off exponentially with jitter up to this: S3 outages tend to last minutes. */
  uploadBackoffCapMs: 5 * 60_000,
  /** Byte-count progress goes to Redis at most this often (step changes always). */
  progressThrottleMs: 1000,
  /** Each service's start is tried this many times before SERVICES_NOT_RUNNING. */
  serviceStartAttempts: 3,
} as const;
