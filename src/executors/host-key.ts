import { createHash, createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';

/** "SHA256:…" as `ssh-keygen -lf` prints it: base64 of the key blob's SHA-256, no padding. */
export function hostKeyFingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** The algorithm name at the start of an SSH public key blob ("ssh-ed25519", "ssh-rsa", …). */
export function hostKeyType(keyBlob: Buffer): string {
  if (keyBlob.length < 4) return 'unknown';
  const length = keyBlob.readUInt32BE(0);
  return length > 0 && length < 64 && keyBlob.length >= 4 + length ? keyBlob.subarray(4, 4 + length).toString('ascii') : 'unknown';
}

export function sameFingerprint(a: string, b: string): boolean {
  const norm = (s: string): string => s.trim().replace(/=+$/, '');
  return norm(a) === norm(b);
}

export interface KnownHostKey {
  readonly type: string;
  readonly blob: Buffer;
  readonly revoked: boolean;
}

/**
 * The keys an OpenSSH known_hosts file lists for host:port: plain and hashed (`|1|salt|hash`)
 * host names, `[host]:port` for ports other than 22, comma lists, `*`/`?` patterns, and
 * `@revoked` markers. `@cert-authority` lines are skipped (host certificates are not supported).
 */
export async function knownHostKeys(path: string, host: string, port: number): Promise<KnownHostKey[]> {
  const text = await readFile(path, 'utf8');
  const name = port === 22 ? host : `[${host}]:${port}`;
  const keys: KnownHostKey[] = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (!line || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let marker: string | undefined;
    if (fields[0]?.startsWith('@')) marker = fields.shift();
    if (marker === '@cert-authority') continue;
    const [hosts, type, key] = fields;
    if (!hosts || !type || !key) continue;
    if (!hostsFieldMatches(hosts, name)) continue;
    keys.push({ type, blob: Buffer.from(key, 'base64'), revoked: marker === '@revoked' });
  }
  return keys;
}

function hostsFieldMatches(field: string, name: string): boolean {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  let matched = false;
  for (const pattern of field.split(',')) {
    const negated = pattern.startsWith('!');
    const glob = negated ? pattern.slice(1) : pattern;
    if (globToRegExp(glob).test(name)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`, 'i');
}
