import { randomBytes } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { combineErrors } from '../errors.ts';
import { simS3Json, simS3Section, simSecretsDir, startSimS3, stopOnce, writeSimJson, type SimS3 } from './sim-s3.ts';
import { generateSimTls, startNativeAppliance, type NativeAppliance, type NativeApplianceOptions } from './native-appliance.ts';

/**
 * Simulated vCenter 7.0/8.0 appliances for `simulate --profile vcsa-native`, the demo and
 * tests: started in this process on loopback, one self-signed certificate shared by all.
 */
export function nativeApplianceNames(count: number, stem = 'vcn'): string[] {
  const width = Math.max(2, String(count).length);
  return Array.from({ length: count }, (_, i) => `${stem}${String(i + 1).padStart(width, '0')}`);
}

export async function startNativeAppliances(count: number, options: Omit<NativeApplianceOptions, 'name' | 'tls'> & { stem?: string; versions?: readonly string[] } = {}): Promise<NativeAppliance[]> {
  const tls = await generateSimTls();
  const { stem, versions, ...rest } = options;
  const started = await Promise.allSettled(
    nativeApplianceNames(count, stem).map((name, i) => {
      const version = versions?.[i % versions.length];
      return startNativeAppliance({ ...rest, name, tls, ...(version ? { version } : {}) });
    }),
  );
  const up = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.allSettled(up.map((a) => a.stop()));
    throw failed.reason;
  }
  return up;
}

/**
 * fleet.yaml entries for native appliances: each API password in a 0600 file under
 * `secretsDir`, TLS pinned to the appliance's certificate fingerprint.
 */
export async function nativeTargets(appliances: readonly NativeAppliance[], secretsDir: string): Promise<Record<string, unknown>[]> {
  await mkdir(secretsDir, { recursive: true, mode: 0o700 });
  await chmod(secretsDir, 0o700);
  const out: Record<string, unknown>[] = [];
  for (const a of appliances) {
    const file = join(secretsDir, `${a.name}-api-password`);
    await writeFile(file, `${a.password}\n`, { mode: 0o600 });
    out.push({ name: a.name, profile: 'vcsa-native', api: { url: a.url, user: a.user, password: { file }, tls: { fingerprint: a.tls.fingerprint } } });
  }
  return out;
}

/** The native section for a fleet on loopback: the receiver on 127.0.0.1, a port per job. */
export function loopbackNativeSection(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { receiver: { listen: '127.0.0.1:0' }, pollSeconds: 1, ...overrides };
}

export interface NativeSimFleet {
  readonly configPath: string;
  readonly simJsonPath: string;
  readonly appliances: readonly NativeAppliance[];
  readonly s3: { readonly endpoint: string; readonly bucket: string };
  stop(): Promise<void>;
}

/** `simulate --profile vcsa-native`: N appliances, an S3 endpoint unless given, fleet.yaml and sim.json. */
export async function startNativeSimFleet(options: {
  readonly count: number;
  readonly outDir: string;
  readonly s3Endpoint?: string;
  readonly redisUrl?: string;
  readonly archiveBytes?: number;
}): Promise<NativeSimFleet> {
  const outDir = resolve(options.outDir);
  await mkdir(outDir, { recursive: true });
  const auditLog = join(outDir, 'audit.jsonl');
  // No services stop on a native appliance: the audit log stays empty, and exists for tools that read it.
  await writeFile(auditLog, '', { flag: 'a' });
  let s3: SimS3 | undefined;
  let appliances: NativeAppliance[] = [];
  const stop = stopOnce('the simulated appliances', () => {
    const embedded = s3?.embedded;
    return [...appliances.map((a) => () => a.stop()), ...(embedded ? [() => embedded.stop()] : [])];
  });
  try {
    s3 = await startSimS3(options.s3Endpoint ? { s3Endpoint: options.s3Endpoint } : {});
    appliances = await startNativeAppliances(options.count, options.archiveBytes ? { archiveBytes: options.archiveBytes } : {});
    const secretsDir = await simSecretsDir(outDir);
    const targets = await nativeTargets(appliances, secretsDir);
    const config = {
      redis: { url: options.redisUrl ?? 'redis://127.0.0.1:6379', prefix: `vcsa-sim-${randomBytes(4).toString('hex')}` },
      s3: await simS3Section(s3, secretsDir),
      native: loopbackNativeSection(),
      spool: { dir: join(outDir, 'spool'), minFreeMiB: 16 },
      targets,
    };
    const configPath = join(outDir, 'fleet.yaml');
    await writeFile(configPath, `# Simulated vCenter 7.0/8.0 fleet written by \`vcsa-backup simulate --profile vcsa-native\`; valid while it runs.\n${stringify(config)}`);
    const simJsonPath = join(outDir, 'sim.json');
    const sim = {
      profile: 'vcsa-native',
      audit: auditLog,
      s3: simS3Json(s3),
      appliances: appliances.map((a) => ({ name: a.name, apiUrl: a.url, version: a.version, build: a.build, tlsFingerprint: a.tls.fingerprint })),
    };
    await writeSimJson(simJsonPath, sim);
    return { configPath, simJsonPath, appliances, s3: { endpoint: s3.endpoint, bucket: s3.bucket }, stop };
  } catch (err) {
    try {
      await stop();
    } catch (cleanupErr) {
      throw combineErrors(err, [cleanupErr]);
    }
    throw err;
  }
}
