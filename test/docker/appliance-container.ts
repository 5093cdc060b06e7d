/**
 * A simulated VCSA 5.5 in a container of the appliance image, for the docker tests: unique
 * name, audit log bind-mounted into a host directory, PostgreSQL on a Unix socket inside, and
 * optionally sshd on a free loopback port (`--network host`). Never a bridge network.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { readAudit, type AuditEntry } from '../../src/sim/audit.ts';
import { testDocker } from '../support/dockerd.ts';
import { ensureApplianceImage } from '../support/images.ts';
import { freePort, makeKeyPair, portAccepts } from '../support/sshd.ts';
import { waitFor } from '../support/poll.ts';

export interface ExecResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function dockerCli(args: readonly string[], options: { timeoutMs?: number } = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    execFile('docker', args, { encoding: 'utf8', timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`docker ${args.join(' ')}: ${err.message}`, { cause: err }));
        return;
      }
      resolve({ exitCode: err ? Number(err.code) : 0, stdout, stderr });
    });
  });
}

export interface SshAccess {
  readonly port: number;
  readonly privateKeyPath: string;
  /** A known_hosts file that pins the container's ed25519 host key for [127.0.0.1]:port. */
  readonly knownHostsPath: string;
}

export interface ApplianceContainer {
  /** Container name, also the appliance name in the audit log. */
  readonly name: string;
  readonly auditLog: string;
  readonly ssh: SshAccess | undefined;
  exec(command: string): Promise<ExecResult>;
  /** SQL through the appliance's own vPostgres psql; psql's unaligned, tuples-only output. */
  sql(database: 'VCDB' | 'invsvc', text: string): Promise<string>;
  serviceRunning(service: 'vmware-vpxd' | 'vmware-inventoryservice'): Promise<boolean>;
  servicesRunning(): Promise<boolean>;
  readSequences(): Promise<{ vcdb: number; inventory: number }>;
  audit(): Promise<AuditEntry[]>;
  running(): Promise<boolean>;
  logs(): Promise<string>;
  remove(): Promise<void>;
}

export interface ApplianceContainerOptions {
  /** Directory for the audit log and SSH keys (the test's temp dir). */
  readonly dir: string;
  /** Start sshd on a free loopback port, with --network host (default: no network, no sshd). */
  readonly ssh?: boolean;
  readonly namePrefix?: string;
  /** The appliance generation (VCSA_SIM_PROFILE; default vcsa-5.5). */
  readonly profile?: 'vcsa-5.5' | 'vcsa-6.x';
}

/** Starts an appliance container and waits until PostgreSQL, both services and (with ssh) sshd are up. */
export async function startApplianceContainer(options: ApplianceContainerOptions): Promise<ApplianceContainer> {
  const image = await ensureApplianceImage();
  const docker = testDocker();
  const name = `${options.namePrefix ?? 'vcsa-sim'}-${randomBytes(4).toString('hex')}`;
  const auditDir = join(options.dir, `${name}-audit`);
  await mkdir(auditDir, { recursive: true });
  const auditLog = join(auditDir, 'audit.jsonl');
  const env = [`VCSA_SIM_NAME=${name}`, `VCSA_SIM_PROFILE=${options.profile ?? 'vcsa-5.5'}`];
  let sshPort: number | undefined;
  let privateKeyPath: string | undefined;
  if (options.ssh) {
    sshPort = await freePort();
    const keys = await makeKeyPair(options.dir, `${name}-key`);
    privateKeyPath = keys.privateKeyPath;
    env.push('VCSA_SIM_SSH=1', `VCSA_SIM_SSH_PORT=${sshPort}`, 'VCSA_SIM_SSH_LISTEN=127.0.0.1', `VCSA_SIM_AUTHORIZED_KEYS=${keys.publicKey.trim()}`);
  } else {
    env.push('VCSA_SIM_SSH=0');
  }
  const container = await docker.createContainer({
    name,
    Image: image,
    Env: env,
    HostConfig: { NetworkMode: options.ssh ? 'host' : 'none', Binds: [`${auditDir}:/var/log/vcsa-sim`] },
  });

  const exec = (command: string): Promise<ExecResult> => dockerCli(['exec', name, 'bash', '-c', command]);
  const logs = async (): Promise<string> => {
    const res = await dockerCli(['logs', '--tail', '40', name]);
    return `${res.stdout}${res.stderr}`;
  };
  const running = async (): Promise<boolean> => {
    try {
      return (await container.inspect()).State.Running;
    } catch {
      return false;
    }
  };
  const remove = async (): Promise<void> => {
    await container.remove({ force: true }).catch((err: { statusCode?: number }) => {
      if (err.statusCode !== 404) throw err;
    });
  };
  const sql = async (database: 'VCDB' | 'invsvc', text: string): Promise<string> => {
    const res = await dockerCli(['exec', '-i', name, '/opt/vmware/vpostgres/1.0/bin/psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', database, '-c', text]);
    if (res.exitCode !== 0) throw new Error(`psql in ${name} (${database}) failed: ${res.stderr.trim()}`);
    return res.stdout;
  };
  const serviceRunning = async (service: 'vmware-vpxd' | 'vmware-inventoryservice'): Promise<boolean> => (await exec(`service ${service} status`)).exitCode === 0;

  try {
    await container.start();
    // A cap, not an expectation: the first start creates the databases, which takes seconds
    // alone and over a minute beside the rest of the suite on a 2-core machine.
    const deadline = Date.now() + 240_000;
    while ((await exec('test -e /run/vcsa-sim.ready')).exitCode !== 0) {
      if (!(await running())) throw new Error(`appliance container ${name} exited while starting:\n${await logs()}`);
      if (Date.now() > deadline) throw new Error(`appliance container ${name} not ready within 240 s:\n${await logs()}`);
      await delay(250);
    }
    let ssh: SshAccess | undefined;
    if (sshPort !== undefined && privateKeyPath !== undefined) {
      while (!(await portAccepts(sshPort))) {
        if (Date.now() > deadline) throw new Error(`sshd of ${name} not listening on 127.0.0.1:${sshPort}:\n${await logs()}`);
        await delay(100);
      }
      const hostKey = (await exec('cat /etc/ssh/ssh_host_ed25519_key.pub')).stdout.trim().split(/\s+/).slice(0, 2).join(' ');
      const knownHostsPath = join(options.dir, `${name}-known_hosts`);
      await writeFile(knownHostsPath, `[127.0.0.1]:${sshPort} ${hostKey}\n`);
      ssh = { port: sshPort, privateKeyPath, knownHostsPath };
    }
    return {
      name,
      auditLog,
      ssh,
      exec,
      sql,
      serviceRunning,
      async servicesRunning() {
        // Every service of the container's profile (the image's healthcheck).
        return (await exec('/usr/local/sbin/vcsa-sim-health')).exitCode === 0;
      },
      async readSequences() {
        const [vcdb, inventory] = await Promise.all([sql('VCDB', 'SELECT coalesce(max(seq), 0) FROM vpx_event;'), sql('invsvc', 'SELECT coalesce(max(seq), 0) FROM inv_progress;')]);
        return { vcdb: Number(vcdb.trim()), inventory: Number(inventory.trim()) };
      },
      audit: async () => (await readAudit(auditLog)).filter((e) => e.appliance === name),
      running,
      logs,
      remove,
    };
  } catch (err) {
    await remove();
    throw err;
  }
}

export { waitFor };
