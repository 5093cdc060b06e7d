import { readFile, rename, writeFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { findTarget } from '../../config/load.ts';
import { BackupError } from '../../errors.ts';
import { fetchHostKeyFingerprint } from '../../executors/ssh.ts';
import { confirm } from '../confirm.ts';
import { exitCodes, requiredString, UsageError, type CliCommand } from '../command.ts';

/**
 * After an appliance is reinstalled its SSH host key changes and every backup fails with
 * SSH_HOST_KEY_MISMATCH, on purpose. This is the deliberate way to accept the new key: show both
 * fingerprints, ask the operator to compare with the appliance's console, and only then write the
 * new one into fleet.yaml (comments and layout kept).
 */
export const command: CliCommand = {
  name: 'trust-host-key',
  summary:
    "Show the SSH host key an appliance presents now next to the one pinned in fleet.yaml, and after confirmation (or --yes) pin the new one. " +
    'Check it first on the appliance console: `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` (or the rsa/ecdsa key).',
  usage: '--target NAME [--yes] [--config fleet.yaml] [--json]',
  options: { target: { type: 'string', short: 't' }, yes: { type: 'boolean', default: false } },
  async run(ctx) {
    const name = requiredString(ctx.values, 'target', 'name the appliance whose host key changed');
    const config = ctx.config();
    const target = findTarget(config, name);
    if (target.executor.type !== 'ssh') throw new UsageError(`--target: ${name} uses the ${target.executor.type} executor; only ssh targets have host keys`);
    const { host, port } = target.executor;
    const pinned = target.executor.hostKey ?? null;
    const seen = await fetchHostKeyFingerprint(host, port, target.executor.connectTimeoutSeconds * 1000);
    const same = pinned === seen.fingerprint;
    if (ctx.json && (same || ctx.values['yes'] !== true)) {
      ctx.out(JSON.stringify({ target: name, host, port, pinned, presented: seen.fingerprint, keyType: seen.keyType, matches: same, updated: false }));
      return same ? exitCodes.ok : exitCodes.failed;
    }
    ctx.say(`${name} (${host}:${port}) presents ${seen.keyType} ${seen.fingerprint}`);
    ctx.say(`fleet.yaml pins              ${pinned ?? '(nothing: knownHosts is used)'}`);
    if (same) {
      ctx.say('They match; nothing to do.');
      return exitCodes.ok;
    }
    if (ctx.values['yes'] !== true) {
      if (!ctx.tty) throw new UsageError('--yes: required without a terminal; compare the fingerprint with the appliance console first');
      if (!(await confirm(`Pin ${seen.fingerprint} for ${name} in ${config.source}? Only if it matches the appliance console. [y/N] `, ctx.signal))) {
        ctx.say('Not changed.');
        return exitCodes.badInput;
      }
    }
    await pinHostKey(config.source, name, seen.fingerprint);
    ctx.say(`Pinned ${seen.fingerprint} for ${name} in ${config.source}.`);
    if (ctx.json) ctx.out(JSON.stringify({ target: name, host, port, pinned, presented: seen.fingerprint, keyType: seen.keyType, matches: false, updated: true }));
    return exitCodes.ok;
  },
};

/** Rewrites targets[i].executor.hostKey in place, keeping the file's comments and layout. */
export async function pinHostKey(path: string, target: string, fingerprint: string): Promise<void> {
  const doc = parseDocument(await readFile(path, 'utf8'));
  const targets = doc.get('targets', true) as { items?: unknown[] } | undefined;
  const index = (targets?.items ?? []).findIndex((item) => (item as { get?: (k: string) => unknown }).get?.('name') === target);
  if (index < 0) throw new BackupError('CONFIG_INVALID', `${path}: no target named ${target}`, { permanent: true });
  doc.setIn(['targets', index, 'executor', 'hostKey'], fingerprint);
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, doc.toString(), { mode: 0o600 });
  await rename(tmp, path);
}
