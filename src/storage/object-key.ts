import { BackupError } from '../errors.ts';

/**
 * Object keys must survive every S3-compatible server and console: colons are mangled by
 * several consoles and by some servers' path handling (the classic script put `date` output
 * with colons in its keys), and a leading '/' or an empty segment makes a different key on
 * path-style servers than on AWS.
 */
export function assertObjectKey(key: string, what: 'key' | 'prefix' = 'key'): void {
  const problem =
    key.includes(':')
      ? 'contains ":"; object keys must not contain colons'
      : what === 'key' && key === ''
        ? 'is empty'
        : key.startsWith('/')
          ? 'starts with "/"'
          : key.includes('//')
            ? 'contains an empty path segment ("//")'
            : null;
  if (problem !== null) {
    throw new BackupError('S3_BAD_KEY', `object ${what} ${JSON.stringify(key)} ${problem}; nothing was sent to S3`, {
      permanent: true,
      details: { key },
    });
  }
}
