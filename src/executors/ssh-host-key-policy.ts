import type { SshExecutorConfig } from '../config/load.ts';
import { BackupError } from '../errors.ts';
import { hostKeyFingerprint, hostKeyType, knownHostKeys, sameFingerprint } from './host-key.ts';

/**
 * Which host keys a connection accepts: the pinned fingerprint (`hostKey`) or the keys that a
 * known_hosts file lists for host:port (`knownHosts`, `@revoked` honoured). There is no
 * trust-on-first-use: with neither, nothing connects.
 */
export interface HostKeyPolicy {
  /** ssh2's hostVerifier: true to go on. A refusal records why, for `mismatch()`. */
  readonly verify: (key: Buffer) => boolean;
  /** Why the last key was refused (the whole operator message), if one was. */
  readonly mismatch: () => string | undefined;
  /** Host key algorithms to offer: those we hold a key for, as OpenSSH does. */
  readonly algorithms?: string[];
}

const supportedHostKeyAlgorithms = new Set([
  'ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa', 'ssh-dss',
]);

const checkOnConsole = '`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`';

/** The policy for one executor's settings; `description` ("ssh root@vc01:22") goes into messages. */
export async function hostKeyPolicy(settings: SshExecutorConfig, description: string): Promise<HostKeyPolicy> {
  let mismatch: string | undefined;
  if (settings.hostKey) {
    const pinned = settings.hostKey;
    return {
      verify: (key) => {
        const actual = hostKeyFingerprint(key);
        if (sameFingerprint(actual, pinned)) return true;
        mismatch =
          `the host key of ${description} does not match the pinned one: expected ${pinned}, the appliance presented ` +
          `${hostKeyType(key)} ${actual}. Nothing was run. If the appliance was reinstalled or its keys regenerated, check the new ` +
          `fingerprint on its console (${checkOnConsole}) and, if it matches ${actual}, put it in ` +
          `hostKey in fleet.yaml. Otherwise someone may be intercepting the connection.`;
        return false;
      },
      mismatch: () => mismatch,
    };
  }
  if (!settings.knownHosts) {
    throw new BackupError('SSH_HOST_KEY_UNKNOWN', `no hostKey or knownHosts for ${description}; pin the appliance's key in fleet.yaml`, { permanent: true });
  }
  const path = settings.knownHosts;
  let keys;
  try {
    keys = await knownHostKeys(path, settings.host, settings.port);
  } catch (err) {
    throw new BackupError('SSH_KNOWN_HOSTS_UNREADABLE', `cannot read knownHosts file ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'}) for ${description}`, { permanent: true });
  }
  const trusted = keys.filter((k) => !k.revoked);
  if (trusted.length === 0) {
    throw new BackupError(
      'SSH_HOST_KEY_UNKNOWN',
      `${path} has no key for ${settings.port === 22 ? settings.host : `[${settings.host}]:${settings.port}`}; add the appliance's key after checking its fingerprint on the console (${checkOnConsole}), or set hostKey in fleet.yaml`,
      { permanent: true },
    );
  }
  // Offer only the algorithms we hold a key for, as OpenSSH does, so the server presents one we know.
  const algorithms = [...new Set(trusted.flatMap((k) => (k.type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [k.type])))].filter((a) => supportedHostKeyAlgorithms.has(a));
  return {
    verify: (key) => {
      if (keys.some((k) => k.revoked && k.blob.equals(key))) {
        mismatch = `the host key of ${description} (${hostKeyFingerprint(key)}) is marked @revoked in ${path}. Nothing was run.`;
        return false;
      }
      if (trusted.some((k) => k.blob.equals(key))) return true;
      mismatch =
        `the host key of ${description} does not match ${path}: expected ${trusted.map((k) => `${k.type} ${hostKeyFingerprint(k.blob)}`).join(' or ')}, ` +
        `the appliance presented ${hostKeyType(key)} ${hostKeyFingerprint(key)}. Nothing was run. If the appliance was reinstalled, check the new ` +
        `fingerprint on its console (${checkOnConsole}) and replace its line in ${path}.`;
      return false;
    },
    mismatch: () => mismatch,
    ...(algorithms.length > 0 ? { algorithms } : {}),
  };
}
