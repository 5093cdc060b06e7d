import type { SshExecutorConfig } from '../config/load.ts';
import { BackupError, describeCommand } from '../errors.ts';

/** An error as ssh2 emits it: `level` says where it happened ("client-authentication", "client-socket", …). */
export type Ssh2Error = Error & { level?: string; code?: string };

/**
 * Turns why a connection could not be made into a BackupError with a stable code and a message
 * that says what to fix. A refused host key wins over whatever ssh2 reported after it.
 */
export function sshConnectError(err: Ssh2Error, settings: SshExecutorConfig, description: string, hostKeyMismatch: string | undefined): BackupError {
  if (hostKeyMismatch) return new BackupError('SSH_HOST_KEY_MISMATCH', hostKeyMismatch, { permanent: true });
  if (err instanceof BackupError) return err;
  if (err.level === 'client-authentication' || err.level === 'agent') {
    const methods = [settings.privateKey && 'private key', settings.agent && 'ssh-agent', settings.password && 'password'].filter(Boolean).join(', ');
    return new BackupError(
      'SSH_AUTH_FAILED',
      `${description} refused authentication as ${settings.user} (tried: ${methods || 'none'}; ${err.message}). Check executor.privateKey/password/agent in fleet.yaml and the user's authorized_keys on the appliance.`,
      { permanent: true },
    );
  }
  if (err.level === 'client-timeout') {
    return new BackupError('SSH_UNREACHABLE', `${description} did not answer within ${settings.connectTimeoutSeconds} s; check that the appliance is up and port ${settings.port} is reachable`);
  }
  if (err.level === 'client-socket' || err.level === 'client-dns') {
    return new BackupError('SSH_UNREACHABLE', `cannot connect to ${description}${err.code ? ` (${err.code})` : ''}: ${err.message}; check that the appliance is up and sshd listens on port ${settings.port}`);
  }
  return new BackupError('SSH_HANDSHAKE_FAILED', `SSH handshake with ${description} failed: ${err.message}`);
}

/** ssh2 refused the private key before connecting (bad format, wrong passphrase). */
export function sshKeyInvalid(err: unknown, description: string): BackupError {
  return new BackupError('SSH_KEY_INVALID', `executor.privateKey for ${description} cannot be used: ${(err as Error).message}; check the key file and its passphrase`, { permanent: true });
}

/** `executor.agent: true` without an agent to talk to. */
export function sshAgentMissing(description: string): BackupError {
  return new BackupError('SSH_AUTH_FAILED', `executor.agent is true for ${description} but SSH_AUTH_SOCK is not set; start ssh-agent or give the socket path`, { permanent: true });
}

/** The connection could not open a channel for a command. */
export function sshExecFailed(err: unknown, description: string, dead: boolean): BackupError {
  return new BackupError('SSH_EXEC_FAILED', `could not start a command on ${description}: ${(err as Error).message}`, { cause: err, details: { dead } });
}

/** The connection dropped while a command ran: no exit status came back. */
export function sshConnectionLost(command: string, description: string, stderrTail: string): BackupError {
  return new BackupError(
    'SSH_CONNECTION_LOST',
    `the SSH connection to ${description} was lost while \`${describeCommand(command)}\` ran; the job will retry. Check the network and the appliance's sshd if this repeats.`,
    { details: { stderrTail } },
  );
}

/** The command wrapper's first line never ran: the login shell is not a POSIX shell. */
export function sshShellUnsupported(user: string, description: string, said: string): BackupError {
  return new BackupError(
    'SSH_SHELL_UNSUPPORTED',
    `the login shell of ${user} on ${description} did not run a POSIX shell command (it said: ${said.trim().slice(-300) || 'nothing'}). ` +
      'vcsa-backup needs bash or sh as that user\'s login shell; on VCSA 6.x run `shell` and then `chsh -s /bin/bash root` on the appliance.',
    { permanent: true },
  );
}
